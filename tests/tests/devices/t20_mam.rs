//! XEP-0313 archives and XEP-0359 stanza ids: every chat a user sends or
//! receives, on any member, paged back by any device.

use starling_core::xml::{Element, ns};
use starling_tests::{Client, TestNode};

use crate::support::*;

const MAM: &str = "urn:xmpp:mam:2";
const SID: &str = "urn:xmpp:sid:0";

/// Queries the client's own archive; returns the bodies of the results in
/// order and the `<fin/>` reply.
async fn query(client: &mut Client, form: &[(&str, &str)], rsm: &str) -> (Vec<String>, Element) {
    let query_id = client.next_id();
    let mut fields = String::new();
    if !form.is_empty() {
        fields.push_str(&format!(
            "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>{MAM}</value></field>"
        ));
        for (var, value) in form {
            fields.push_str(&format!(
                "<field var='{var}'><value>{value}</value></field>"
            ));
        }
        fields.push_str("</x>");
    }
    let fin = iq(
        client,
        "set",
        None,
        &format!("<query xmlns='{MAM}' queryid='{query_id}'>{fields}{rsm}</query>"),
    )
    .await;
    let results: Vec<String> = client
        .pending()
        .filter_map(|e| {
            let result = e.child("result", MAM)?;
            (result.attr("queryid") == Some(query_id.as_str())).then(|| {
                let forwarded = result.child("forwarded", "urn:xmpp:forward:0")?;
                assert!(forwarded.has_child("delay", ns::DELAY), "{e}");
                forwarded
                    .children()
                    .find(|c| c.name() == "message")
                    .map(body)
            })?
        })
        .collect();
    (results, fin)
}

fn fin_of(reply: &Element) -> &Element {
    assert_result(reply)
        .child("fin", MAM)
        .unwrap_or_else(|| panic!("no <fin/>: {reply}"))
}

fn rsm_last(reply: &Element) -> String {
    fin_of(reply)
        .children()
        .find(|c| c.name() == "set")
        .and_then(|set| set.children().find(|c| c.name() == "last"))
        .map(Element::text)
        .unwrap_or_else(|| panic!("no <last/>: {reply}"))
}

#[tokio::test]
async fn sent_and_received_chats_are_archived_and_paged_back() {
    let node = TestNode::builder()
        .user("alice", PW)
        .user("bob", PW)
        .user("carol", PW)
        .start();
    let mut alice = online(&node, "alice", PW, "a").await;
    let mut bob = online(&node, "bob", PW, "b").await;
    let mut carol = online(&node, "carol", PW, "c").await;
    chat(&mut bob, "alice@localhost/a", "one").await;
    let received = expect_body(&mut alice, "one").await;
    let stanza_id = received
        .child("stanza-id", SID)
        .unwrap_or_else(|| panic!("no stanza id: {received}"));
    assert_eq!(stanza_id.attr("by"), Some("alice@localhost"), "{received}");
    chat(&mut alice, "bob@localhost/b", "two").await;
    expect_body(&mut bob, "two").await;
    chat(&mut carol, "alice@localhost", "three").await;
    expect_body(&mut alice, "three").await;
    // Not archived: a chat state without a body, a headline, a no-store hint.
    send(&mut bob, "<message to='alice@localhost/a' type='chat'><active xmlns='http://jabber.org/protocol/chatstates'/></message>").await;
    send(
        &mut bob,
        "<message to='alice@localhost/a' type='headline'><body>news</body></message>",
    )
    .await;
    send(&mut bob, "<message to='alice@localhost/a' type='chat'><body>ephemeral</body><no-store xmlns='urn:xmpp:hints'/></message>").await;
    expect_body(&mut alice, "ephemeral").await;
    chat(&mut bob, "alice@localhost/a", "four").await;
    expect_body(&mut alice, "four").await;

    let (all, fin) = query(&mut alice, &[], "").await;
    assert_eq!(all, ["one", "two", "three", "four"]);
    assert_eq!(fin_of(&fin).attr("complete"), Some("true"), "{fin}");

    // Pages of two, forwards.
    let max2 = "<set xmlns='http://jabber.org/protocol/rsm'><max>2</max></set>";
    let (first, fin) = query(&mut alice, &[], max2).await;
    assert_eq!(first, ["one", "two"]);
    assert_eq!(fin_of(&fin).attr("complete"), Some("false"), "{fin}");
    let after = format!(
        "<set xmlns='http://jabber.org/protocol/rsm'><max>2</max><after>{}</after></set>",
        rsm_last(&fin)
    );
    let (second, fin) = query(&mut alice, &[], &after).await;
    assert_eq!(second, ["three", "four"]);
    assert_eq!(fin_of(&fin).attr("complete"), Some("true"), "{fin}");
    // The last page, and one correspondent only.
    let last = "<set xmlns='http://jabber.org/protocol/rsm'><max>1</max><before/></set>";
    assert_eq!(query(&mut alice, &[], last).await.0, ["four"]);
    assert_eq!(
        query(&mut alice, &[("with", "bob@localhost")], "").await.0,
        ["one", "two", "four"]
    );
    // bob's archive has his side.
    assert_eq!(query(&mut bob, &[], "").await.0, ["one", "two", "four"]);

    // Extended queries: the archive's ends, a flipped page, chosen ids.
    let metadata = iq(
        &mut alice,
        "get",
        None,
        &format!("<metadata xmlns='{MAM}'/>"),
    )
    .await;
    let metadata = assert_result(&metadata)
        .child("metadata", MAM)
        .unwrap()
        .clone();
    let end_of = |name: &str| {
        metadata
            .children()
            .find(|c| c.name() == name)
            .and_then(|c| c.attr("id"))
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("no {name}: {metadata}"))
    };
    let (first_id, last_id) = (end_of("start"), end_of("end"));
    let flipped = format!("<flip-page/>{max2}");
    assert_eq!(query(&mut alice, &[], &flipped).await.0, ["two", "one"]);
    let ids = format!("{first_id}</value><value>{last_id}");
    assert_eq!(
        query(&mut alice, &[("ids", &ids)], "").await.0,
        ["one", "four"]
    );
}

#[tokio::test]
async fn the_archive_is_its_owners_and_its_stanza_ids_cannot_be_forged() {
    let node = TestNode::builder()
        .user("alice", PW)
        .user("bob", PW)
        .start();
    let mut alice = online(&node, "alice", PW, "a").await;
    let mut bob = online(&node, "bob", PW, "b").await;
    let other = iq(
        &mut bob,
        "set",
        Some("alice@localhost"),
        &format!("<query xmlns='{MAM}'/>"),
    )
    .await;
    assert_error(&other, "auth", "forbidden");
    let unknown = iq(
        &mut alice,
        "set",
        None,
        &format!("<query xmlns='{MAM}'><set xmlns='http://jabber.org/protocol/rsm'><after>nope</after></set></query>"),
    )
    .await;
    assert_error(&unknown, "cancel", "item-not-found");
    let bad_field = iq(
        &mut alice,
        "set",
        None,
        &format!("<query xmlns='{MAM}'><x xmlns='jabber:x:data' type='submit'><field var='start'><value>yesterday</value></field></x></query>"),
    )
    .await;
    assert_error(&bad_field, "modify", "bad-request");

    send(
        &mut bob,
        &format!("<message to='alice@localhost/a' type='chat'><body>forged</body><stanza-id xmlns='{SID}' by='alice@localhost' id='fake'/></message>"),
    )
    .await;
    let received = expect_body(&mut alice, "forged").await;
    let ids: Vec<&str> = received
        .children()
        .filter(|c| c.is("stanza-id", SID))
        .filter_map(|c| c.attr("id"))
        .collect();
    assert_eq!(ids.len(), 1, "{received}");
    assert_ne!(ids[0], "fake", "{received}");
}

#[tokio::test]
async fn a_device_that_was_off_finds_its_history_on_another_member() {
    let cluster = cluster(&["alice", "bob"]);
    let mut alice = online(node(&cluster, 1), "alice", PW, "phone").await;
    let mut bob = online(node(&cluster, 3), "bob", PW, "b").await;
    barrier(&mut alice, &mut bob).await;
    barrier(&mut bob, &mut alice).await;
    chat(
        &mut bob,
        "alice@localhost/phone",
        "while the laptop was off",
    )
    .await;
    expect_body(&mut alice, "while the laptop was off").await;
    chat(&mut alice, "bob@localhost/b", "answered from the phone").await;
    expect_body(&mut bob, "answered from the phone").await;
    alice.close().await.unwrap();
    chat(&mut bob, "alice@localhost", "while both were off").await;
    sync(&mut bob).await;

    let mut laptop = online(node(&cluster, 2), "alice", PW, "laptop").await;
    expect_body(&mut laptop, "while both were off").await;
    let (history, _) = query(&mut laptop, &[], "").await;
    let history: Vec<&str> = history
        .iter()
        .map(String::as_str)
        .filter(|b| !b.starts_with("barrier-"))
        .collect();
    assert_eq!(
        history,
        [
            "while the laptop was off",
            "answered from the phone",
            "while both were off"
        ]
    );
}
