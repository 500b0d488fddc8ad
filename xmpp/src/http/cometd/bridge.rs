//! The bridge between Bayeux channels and XMPP pub/sub: channel
//! `/pubsub/<node>` is pub/sub node `<node>` on `pubsub.<domain>`.
//!
//! Events of a node reach this node's Bayeux subscribers through one
//! [`crate::pubsub::Watch`] per channel (the pub/sub service routes them
//! here from whichever cluster node published). A Bayeux publish becomes a
//! pub/sub item whose payload is the message's `data` as XEP-0335 JSON.
//! Only the payload mapping is decided here; rights and storage are the
//! pub/sub service's.

use std::sync::Arc;

use serde_json::{Value, json};
use starling_core::jid::BareJid;
use starling_core::xml::Element;

use super::clients::Identity;
use super::message::BayeuxError;
use super::outbox::Event;
use crate::pubsub::{Actor, NodeEvent, PubSubError};

/// XEP-0335: JSON containers.
pub(crate) const JSON_NS: &str = "urn:xmpp:json:0";

const PREFIX: &str = "/pubsub/";

/// The pub/sub node a channel stands for (`None`: not a bridged channel).
pub(crate) fn node_of(channel: &str) -> Option<&str> {
    channel.strip_prefix(PREFIX).filter(|node| !node.is_empty())
}

pub(crate) fn channel_of(node: &str) -> String {
    format!("{PREFIX}{node}")
}

pub(crate) fn actor(identity: &Identity) -> Actor {
    match identity {
        Identity::User(jid) => match BareJid::new(jid) {
            Ok(jid) => Actor::User(jid),
            // Identities come from accounts we authenticated; never reached.
            Err(_) => Actor::Anonymous,
        },
        Identity::Anonymous => Actor::Anonymous,
    }
}

/// A Bayeux publish's data as an item payload.
pub(crate) fn payload_of(data: &Value) -> Element {
    Element::new("json", JSON_NS).with_text(data.to_string())
}

/// An item payload as Bayeux data: parsed JSON for XEP-0335, else the XML
/// as a string.
pub(crate) fn data_of(payload: &Element) -> Value {
    if payload.is("json", JSON_NS) {
        if let Ok(value) = serde_json::from_str::<Value>(&payload.text()) {
            return value;
        }
    }
    Value::String(payload.to_standalone_string())
}

/// The Bayeux message for a node event, serialised once for every
/// subscriber.
pub(crate) fn event_message(event: &NodeEvent) -> Event {
    let message = match event {
        NodeEvent::Published {
            node,
            item_id,
            publisher,
            payload,
        } => json!({
            "channel": channel_of(node),
            "data": {
                "node": node,
                "id": item_id,
                "publisher": publisher,
                "payload": data_of(payload),
            },
        }),
        NodeEvent::Retracted { node, item_id } => json!({
            "channel": channel_of(node),
            "data": {"node": node, "id": item_id, "retracted": true},
        }),
        NodeEvent::Deleted { node } => json!({
            "channel": channel_of(node),
            "data": {"node": node, "deleted": true},
        }),
        NodeEvent::Purged { node } => json!({
            "channel": channel_of(node),
            "data": {"node": node, "purged": true},
        }),
    };
    Arc::from(message.to_string())
}

/// A pub/sub refusal as a Bayeux error on `channel`.
pub(crate) fn error_of(channel: &str, error: &PubSubError) -> BayeuxError {
    let code = match error.condition() {
        "forbidden" | "not-authorized" | "registration-required" => 403,
        "item-not-found" => 404,
        "bad-request" | "not-acceptable" | "policy-violation" | "jid-malformed" => 400,
        "conflict" => 409,
        "not-allowed" | "feature-not-implemented" => 405,
        _ => 500,
    };
    BayeuxError::with_arg(code, channel, error.text())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_map_to_nodes() {
        assert_eq!(node_of("/pubsub/news"), Some("news"));
        assert_eq!(node_of("/pubsub/a/b"), Some("a/b"));
        assert_eq!(node_of("/pubsub/"), None);
        assert_eq!(node_of("/chat/news"), None);
        assert_eq!(channel_of("news"), "/pubsub/news");
    }

    #[test]
    fn json_payloads_round_trip_and_other_xml_stays_xml() {
        let data = json!({"text": "<hi> & \"bye\"", "n": [1, 2]});
        let payload = payload_of(&data);
        assert!(payload.is("json", JSON_NS));
        assert_eq!(data_of(&payload), data);
        let entry = Element::new("entry", "http://www.w3.org/2005/Atom").with_text("x");
        assert_eq!(
            data_of(&entry),
            json!("<entry xmlns=\"http://www.w3.org/2005/Atom\">x</entry>")
        );
    }

    #[test]
    fn a_published_item_becomes_one_serialised_message() {
        let event = NodeEvent::Published {
            node: "news".into(),
            item_id: "i1".into(),
            publisher: Some("alice@localhost".into()),
            payload: payload_of(&json!({"a": 1})),
        };
        let message: Value = serde_json::from_str(&event_message(&event)).unwrap();
        assert_eq!(
            message,
            json!({"channel": "/pubsub/news", "data": {
                "node": "news", "id": "i1", "publisher": "alice@localhost", "payload": {"a": 1}}})
        );
    }
}
