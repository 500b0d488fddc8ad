//! IQs the server answers (RFC 6120 8.2.3, 10.3; XEP-0030 disco, XEP-0199
//! ping, XEP-0092 version) and the errors for what it does not: never
//! silence.

use starling_core::xml::{Element, ns};
use starling_tests::TestNode;

use crate::support::{WAIT, assert_error, assert_result, expect_reply, iq, login, online};

const UNKNOWN: &str = "<query xmlns='urn:example:nothing-here'/>";

fn features(info: &Element) -> Vec<String> {
    info.child("query", ns::DISCO_INFO)
        .map(|query| {
            query
                .children()
                .filter(|child| child.is("feature", ns::DISCO_INFO))
                .filter_map(|feature| feature.attr("var").map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn identity(info: &Element) -> Option<(String, String)> {
    let identity = info
        .child("query", ns::DISCO_INFO)?
        .child("identity", ns::DISCO_INFO)?;
    Some((
        identity.attr("category")?.to_owned(),
        identity.attr("type")?.to_owned(),
    ))
}

#[tokio::test]
async fn disco_of_the_server_and_of_an_account() {
    let node = TestNode::builder()
        .user("alice", "pw")
        .user("bob", "pw")
        .start();
    let mut alice = login(&node, "alice", "pw", "a").await;

    let info = iq(
        &mut alice,
        "get",
        Some("localhost"),
        &format!("<query xmlns='{}'/>", ns::DISCO_INFO),
    )
    .await;
    assert_result(&info);
    assert_eq!(info.attr("from"), Some("localhost"));
    assert_eq!(info.attr("to"), Some("alice@localhost/a"));
    assert_eq!(
        identity(&info),
        Some(("server".to_owned(), "im".to_owned()))
    );
    let vars = features(&info);
    for var in [ns::DISCO_INFO, ns::DISCO_ITEMS, ns::PING, ns::VERSION] {
        assert!(vars.iter().any(|v| v == var), "{var} missing from {info}");
    }
    // In-band registration is off by default and not advertised.
    assert!(!vars.iter().any(|v| v == ns::REGISTER), "{info}");

    let items = iq(
        &mut alice,
        "get",
        Some("localhost"),
        &format!("<query xmlns='{}'/>", ns::DISCO_ITEMS),
    )
    .await;
    assert_result(&items);
    assert!(items.has_child("query", ns::DISCO_ITEMS), "{items}");
    // A node the server does not have.
    let missing = iq(
        &mut alice,
        "get",
        Some("localhost"),
        &format!("<query xmlns='{}' node='no-such-node'/>", ns::DISCO_INFO),
    )
    .await;
    assert_error(&missing, "cancel", "item-not-found");

    // The server answers for an account's bare JID (RFC 6120 10.3.3).
    for to in ["bob@localhost", "alice@localhost"] {
        let info = iq(
            &mut alice,
            "get",
            Some(to),
            &format!("<query xmlns='{}'/>", ns::DISCO_INFO),
        )
        .await;
        assert_result(&info);
        assert_eq!(info.attr("from"), Some(to));
        assert_eq!(
            identity(&info),
            Some(("account".to_owned(), "registered".to_owned()))
        );
        assert!(
            features(&info).iter().any(|v| v == ns::DISCO_INFO),
            "{info}"
        );
        let items = iq(
            &mut alice,
            "get",
            Some(to),
            &format!("<query xmlns='{}'/>", ns::DISCO_ITEMS),
        )
        .await;
        assert_result(&items);
        assert!(items.has_child("query", ns::DISCO_ITEMS), "{items}");
    }
    // No such account: service-unavailable, which reveals nothing more.
    let info = iq(
        &mut alice,
        "get",
        Some("nobody@localhost"),
        &format!("<query xmlns='{}'/>", ns::DISCO_INFO),
    )
    .await;
    assert_error(&info, "cancel", "service-unavailable");
    assert_eq!(info.attr("from"), Some("nobody@localhost"));
}

#[tokio::test]
async fn ping_and_version() {
    let node = TestNode::builder().user("alice", "pw").start();
    let mut alice = login(&node, "alice", "pw", "a").await;
    for to in [None, Some("localhost")] {
        let pong = iq(&mut alice, "get", to, "<ping xmlns='urn:xmpp:ping'/>").await;
        assert_result(&pong);
        assert_eq!(pong.children().count(), 0, "a ping result is empty: {pong}");
        assert_eq!(pong.attr("to"), Some("alice@localhost/a"));
    }
    let version = iq(
        &mut alice,
        "get",
        Some("localhost"),
        "<query xmlns='jabber:iq:version'/>",
    )
    .await;
    assert_result(&version);
    let query = version
        .child("query", ns::VERSION)
        .unwrap_or_else(|| panic!("no version query: {version}"));
    let field = |name: &str| query.child(name, ns::VERSION).map(Element::text);
    assert_eq!(field("name").as_deref(), Some("Starling"));
    assert!(field("version").is_some_and(|v| !v.is_empty()), "{version}");
    // Ping and version are gets: a set is not a request they answer.
    let set = iq(
        &mut alice,
        "set",
        Some("localhost"),
        "<ping xmlns='urn:xmpp:ping'/>",
    )
    .await;
    assert_eq!(set.attr("type"), Some("error"), "{set}");
}

/// A module turned off answers nothing, and disco stops listing it: the
/// disco answers are assembled from the enabled modules.
#[tokio::test]
async fn a_disabled_module_answers_nothing_and_disco_no_longer_lists_it() {
    let node = TestNode::builder()
        .user("alice", "pw")
        .set("modules.version", "enabled = false")
        .start();
    let mut alice = login(&node, "alice", "pw", "a").await;
    let version = iq(
        &mut alice,
        "get",
        Some("localhost"),
        "<query xmlns='jabber:iq:version'/>",
    )
    .await;
    assert_error(&version, "cancel", "service-unavailable");
    let info = iq(
        &mut alice,
        "get",
        Some("localhost"),
        &format!("<query xmlns='{}'/>", ns::DISCO_INFO),
    )
    .await;
    let vars = features(&info);
    assert!(!vars.iter().any(|v| v == ns::VERSION), "{info}");
    assert!(vars.iter().any(|v| v == ns::PING), "{info}");
    // Every feature once, in order (what XEP-0115 hashing of it needs).
    let mut sorted = vars.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(vars, sorted, "{info}");
}

#[tokio::test]
async fn unknown_requests_get_errors_never_silence() {
    let node = TestNode::builder()
        .user("alice", "pw")
        .user("bob", "pw")
        .start();
    let mut alice = login(&node, "alice", "pw", "a").await;
    let mut bob = online(&node, "bob", "pw", "b").await;

    // An unknown namespace, to the server, to an account, to oneself.
    for to in [
        None,
        Some("localhost"),
        Some("bob@localhost"),
        Some("alice@localhost"),
    ] {
        for ty in ["get", "set"] {
            let reply = iq(&mut alice, ty, to, UNKNOWN).await;
            assert_error(&reply, "cancel", "service-unavailable");
            if let Some(to) = to {
                assert_eq!(reply.attr("from"), Some(to), "{reply}");
            }
        }
    }

    // A full JID that is not connected (RFC 6121 8.5.3.2.1 for iq).
    let reply = iq(
        &mut alice,
        "get",
        Some("bob@localhost/gone"),
        "<ping xmlns='urn:xmpp:ping'/>",
    )
    .await;
    assert_error(&reply, "cancel", "service-unavailable");
    assert_eq!(reply.attr("from"), Some("bob@localhost/gone"));

    // A connected full JID gets the request and answers it itself.
    alice
        .send(
            "<iq type='get' id='to-bob' to='bob@localhost/b'><query xmlns='urn:example:app'/></iq>",
        )
        .await
        .unwrap();
    let request = bob
        .expect(|e| e.name() == "iq" && e.attr("id") == Some("to-bob"), WAIT)
        .await
        .unwrap();
    assert_eq!(request.attr("from"), Some("alice@localhost/a"));
    assert_eq!(request.attr("type"), Some("get"));
    bob.send("<iq type='result' id='to-bob' to='alice@localhost/a'/>")
        .await
        .unwrap();
    let answer = expect_reply(&mut alice, "to-bob").await;
    assert_result(&answer);
    assert_eq!(answer.attr("from"), Some("bob@localhost/b"));

    // RFC 6120 8.2.3: a get or set carries exactly one child.
    for ty in ["get", "set"] {
        alice
            .send(&format!(
                "<iq type='{ty}' id='two-{ty}' to='localhost'><ping xmlns='urn:xmpp:ping'/>{UNKNOWN}</iq>"
            ))
            .await
            .unwrap();
        let reply = expect_reply(&mut alice, &format!("two-{ty}")).await;
        assert_error(&reply, "modify", "bad-request");
        alice
            .send(&format!("<iq type='{ty}' id='none-{ty}' to='localhost'/>"))
            .await
            .unwrap();
        let reply = expect_reply(&mut alice, &format!("none-{ty}")).await;
        assert_error(&reply, "modify", "bad-request");
    }
}
