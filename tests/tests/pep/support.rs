//! PEP test helpers: capabilities that ask for notifications, publishing
//! and reading items, event predicates. The login, roster and barrier
//! helpers are the c2s suite's (through the cluster suite's support).

#[path = "../cluster/support.rs"]
#[allow(dead_code)]
mod cluster;

use base64::Engine;
use sha1::{Digest, Sha1};
use starling_core::xml::{Element, ns};
use starling_tests::Client;

#[allow(unused_imports)]
pub(crate) use cluster::*;

pub(crate) const AVATAR_METADATA: &str = "urn:xmpp:avatar:metadata";
pub(crate) const DEVICE_LIST: &str = "eu.siacs.conversations.axolotl.devicelist";

/// The XEP-0115 hash of a client with one identity and these features.
fn caps_ver(features: &[String]) -> String {
    let mut sorted = features.to_vec();
    sorted.sort();
    let mut s = String::from("client/pc//Starling tests<");
    for feature in sorted {
        s.push_str(&feature);
        s.push('<');
    }
    base64::engine::general_purpose::STANDARD.encode(Sha1::digest(s.as_bytes()))
}

fn caps_features(notify: &[&str]) -> Vec<String> {
    let mut features = vec![
        ns::DISCO_INFO.to_owned(),
        "http://jabber.org/protocol/caps".to_owned(),
    ];
    features.extend(notify.iter().map(|node| format!("{node}+notify")));
    features
}

/// Sends available presence with capabilities that want notifications of
/// `notify` nodes, answers the server's disco#info question if it asks
/// (it does not when the hash is known), and returns once the presence
/// echo arrived. Returns whether the server asked.
pub(crate) async fn online_wanting(client: &mut Client, notify: &[&str]) -> bool {
    let features = caps_features(notify);
    let ver = caps_ver(&features);
    send(
        client,
        &format!(
            "<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' \
             node='https://starling.example/tests' ver='{ver}'/></presence>"
        ),
    )
    .await;
    let me = jid(client);
    expect_presence(client, &me, None).await;
    let asked = client
        .pending()
        .any(|e| e.name() == "iq" && e.has_child("query", ns::DISCO_INFO));
    if asked {
        let question = client
            .expect(
                |e| {
                    e.name() == "iq"
                        && e.attr("type") == Some("get")
                        && e.has_child("query", ns::DISCO_INFO)
                },
                WAIT,
            )
            .await
            .unwrap();
        let node = question
            .child("query", ns::DISCO_INFO)
            .and_then(|q| q.attr("node"))
            .unwrap_or_default()
            .to_owned();
        assert!(
            node.ends_with(&ver),
            "the question names the hash: {question}"
        );
        let mut answer = format!(
            "<iq type='result' id='{}' to='{}'><query xmlns='{}' node='{node}'>\
             <identity category='client' type='pc' name='Starling tests'/>",
            question.attr("id").unwrap(),
            question.attr("from").unwrap(),
            ns::DISCO_INFO
        );
        for feature in &features {
            answer.push_str(&format!("<feature var='{feature}'/>"));
        }
        answer.push_str("</query></iq>");
        send(client, &answer).await;
    }
    // The answer is handled before the ping: wanted nodes are known after it.
    sync(client).await;
    asked
}

/// Publishes `payload` as item `id` of `node` on the client's own account;
/// returns the reply (result or error).
pub(crate) async fn publish(client: &mut Client, node: &str, id: &str, payload: &str) -> Element {
    publish_with(client, node, id, payload, "").await
}

/// As [`publish`], with `<publish-options/>` fields (var, value).
pub(crate) async fn publish_with(
    client: &mut Client,
    node: &str,
    id: &str,
    payload: &str,
    options: &str,
) -> Element {
    iq(
        client,
        "set",
        None,
        &format!(
            "<pubsub xmlns='{}'><publish node='{node}'><item id='{id}'>{payload}</item></publish>{options}</pubsub>",
            ns::PUBSUB
        ),
    )
    .await
}

/// A `<publish-options/>` form with these fields.
pub(crate) fn options(fields: &[(&str, &str)]) -> String {
    let mut form = format!(
        "<publish-options><x xmlns='jabber:x:data' type='submit'>\
         <field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>"
    );
    for (var, value) in fields {
        form.push_str(&format!(
            "<field var='{var}'><value>{value}</value></field>"
        ));
    }
    form.push_str("</x></publish-options>");
    form
}

/// Reads the items of `owner`'s `node`; returns the reply.
pub(crate) async fn items(client: &mut Client, owner: &str, node: &str) -> Element {
    iq(
        client,
        "get",
        Some(owner),
        &format!(
            "<pubsub xmlns='{}'><items node='{node}'/></pubsub>",
            ns::PUBSUB
        ),
    )
    .await
}

/// The ids of the items in an items result.
pub(crate) fn item_ids(reply: &Element) -> Vec<String> {
    reply
        .child("pubsub", ns::PUBSUB)
        .and_then(|pubsub| pubsub.child("items", ns::PUBSUB))
        .map(|items| {
            items
                .children()
                .filter_map(|item| item.attr("id").map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// A PEP notification from `owner` of an item `id` on `node`.
pub(crate) fn is_event(element: &Element, owner: &str, node: &str, id: &str) -> bool {
    element.name() == "message"
        && element.attr("from") == Some(owner)
        && element
            .child("event", ns::PUBSUB_EVENT)
            .and_then(|event| event.child("items", ns::PUBSUB_EVENT))
            .is_some_and(|items| {
                items.attr("node") == Some(node)
                    && items
                        .children()
                        .any(|item| item.name() == "item" && item.attr("id") == Some(id))
            })
}

/// Any PEP notification of `node`.
pub(crate) fn is_event_of(element: &Element, node: &str) -> bool {
    element.name() == "message"
        && element
            .child("event", ns::PUBSUB_EVENT)
            .and_then(|event| event.children().next())
            .is_some_and(|first| first.attr("node") == Some(node))
}

/// Waits for the notification of item `id` of `owner`'s `node`.
pub(crate) async fn expect_event(
    client: &mut Client,
    owner: &str,
    node: &str,
    id: &str,
) -> Element {
    client
        .expect(|e| is_event(e, owner, node, id), WAIT)
        .await
        .unwrap_or_else(|error| {
            panic!(
                "{} got no event for {owner}'s {node} item {id}: {error}",
                jid(client)
            )
        })
}
