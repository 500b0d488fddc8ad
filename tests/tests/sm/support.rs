//! Helpers for the stream-management tests: the cluster suite's login,
//! barrier and predicate helpers, plus chat, enabling with resumption and
//! collecting numbered messages.

#[path = "../cluster/support.rs"]
#[allow(dead_code)]
mod cluster;

use starling_core::xml::Element;
use starling_tests::{Client, SmEnabled, TestNode};

#[allow(unused_imports)]
pub(crate) use cluster::*;

/// Sends a chat with `text` from `from` to `to`.
pub(crate) async fn chat(from: &mut Client, to: &str, text: &str) {
    send(
        from,
        &format!("<message to='{to}' type='chat'><body>{text}</body></message>"),
    )
    .await;
}

/// Enables stream management with resumption; returns the id.
pub(crate) async fn enable_resumable(client: &mut Client) -> String {
    let enabled: SmEnabled = client
        .enable_sm(true)
        .await
        .unwrap_or_else(|error| panic!("{} cannot enable resumption: {error}", jid(client)));
    enabled.id.expect("a resumable session has an id")
}

/// Resumes `previd` as `user` with `resource` on `node`, saying `h` stanzas
/// were handled.
pub(crate) async fn resume(
    node: &TestNode,
    user: &str,
    resource: &str,
    previd: &str,
    h: u32,
) -> Result<(Client, u32), starling_tests::ClientError> {
    Client::resume(node.c2s, &options(node, user, PW, resource), previd, h).await
}

/// Waits for `count` chats whose bodies start with `prefix` and returns
/// their bodies in arrival order (other stanzas are kept).
pub(crate) async fn collect(client: &mut Client, prefix: &str, count: usize) -> Vec<String> {
    let mut bodies = Vec::with_capacity(count);
    while bodies.len() < count {
        let message = client
            .expect(|e| is_message(e) && body(e).starts_with(prefix), WAIT)
            .await
            .unwrap_or_else(|error| {
                panic!(
                    "{} got {} of {count} {prefix:?} messages: {error}",
                    jid(client),
                    bodies.len()
                )
            });
        bodies.push(body(&message));
    }
    bodies
}

/// The bodies `prefix-0` .. `prefix-(count-1)`.
pub(crate) fn numbered(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|n| format!("{prefix}-{n}")).collect()
}

/// An unavailable presence from `from` (a bare JID: any of its resources).
pub(crate) fn is_unavailable_from(element: &Element, from: &str) -> bool {
    element.name() == "presence"
        && element.attr("type") == Some("unavailable")
        && element
            .attr("from")
            .is_some_and(|jid| jid.split('/').next() == Some(from))
}

/// Polls a metric of `node` until it reaches `at_least` (10 s at most).
pub(crate) async fn wait_metric(node: &TestNode, name: &str, at_least: f64) {
    for _ in 0..200 {
        if node.metric(name).await >= at_least {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("{name} never reached {at_least}");
}
