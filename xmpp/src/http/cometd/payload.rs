//! The CometD contract across the bridge: what a Bayeux client publishes
//! reaches every Bayeux subscriber as `data`, unchanged; what XMPP knows
//! about the item (pub/sub node, item id, publisher) travels beside it in
//! `ext.xmpp`.
//!
//! ```text
//!  Bayeux publish  data ──────────────► item payload <json xmlns='urn:xmpp:json:0'>data</json>
//!  item payload   <json>TEXT</json> ──► data = TEXT (the JSON, byte for byte)
//!                 any other XML ──────► data = {"xml": "<entry xmlns=...>...</entry>"}
//!  retract, purge, delete ────────────► data = null, ext.xmpp says what happened
//! ```
//!
//! JSON is carried as text, never re-serialised: key order, number
//! spelling and escapes are the publisher's, so a CometD application gets
//! back exactly what it sent.

use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use starling_core::xml::Element;

use super::bridge::channel_of;
use super::outbox::Event;
use crate::pubsub::NodeEvent;

/// XEP-0335: JSON containers.
pub(crate) const JSON_NS: &str = "urn:xmpp:json:0";

/// A Bayeux publish's data as an item payload (XEP-0335), so XMPP
/// subscribers get it as JSON too.
pub(crate) fn item_payload(data: &RawValue) -> Element {
    Element::new("json", JSON_NS).with_text(data.get())
}

/// An item payload as Bayeux `data`: the JSON of a XEP-0335 container as
/// it is, any other XML (or a container whose text is not JSON) as
/// `{"xml": "<...>"}`.
pub(crate) fn data_of(payload: &Element) -> Box<RawValue> {
    if payload.is("json", JSON_NS) {
        if let Ok(json) = RawValue::from_string(payload.text()) {
            return json;
        }
    }
    raw(&json!({ "xml": payload.to_standalone_string() }))
}

/// One Bayeux message as subscribers receive it.
#[derive(Serialize)]
struct Delivery<'a> {
    channel: String,
    data: &'a RawValue,
    ext: Ext,
}

#[derive(Serialize)]
struct Ext {
    xmpp: Value,
}

/// The Bayeux message for a node event, serialised once for every
/// subscriber.
pub(crate) fn event_message(event: &NodeEvent) -> Event {
    let (data, xmpp) = match event {
        NodeEvent::Published {
            node,
            item_id,
            publisher,
            payload,
        } => (
            data_of(payload),
            json!({"node": node, "id": item_id, "publisher": publisher}),
        ),
        NodeEvent::Retracted { node, item_id } => (
            null(),
            json!({"node": node, "id": item_id, "retracted": true}),
        ),
        NodeEvent::Deleted { node } => (null(), json!({"node": node, "deleted": true})),
        NodeEvent::Purged { node } => (null(), json!({"node": node, "purged": true})),
    };
    let delivery = Delivery {
        channel: channel_of(event.node()),
        data: &data,
        ext: Ext { xmpp },
    };
    Event::from(serialise(&delivery))
}

fn null() -> Box<RawValue> {
    raw(&Value::Null)
}

/// A value as raw JSON.
fn raw(value: &Value) -> Box<RawValue> {
    serde_json::value::to_raw_value(value).expect("a Value (string keys only) serialises")
}

fn serialise(delivery: &Delivery<'_>) -> String {
    serde_json::to_string(delivery).expect("strings, raw JSON and Values serialise")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw_json(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).unwrap()
    }

    #[test]
    fn published_data_comes_back_byte_for_byte() {
        // Key order, number spelling, escapes and unicode as the client wrote them.
        let text = r#"{"z":1,"a":[1.50,-0,1e3,{"b":null}],"t":"<hi> & \"bye\" \u00e9 ☃ 😀","n":12345678901234567890123}"#;
        let payload = item_payload(&raw_json(text));
        assert!(payload.is("json", JSON_NS));
        assert_eq!(payload.text(), text);
        assert_eq!(data_of(&payload).get(), text);
    }

    #[test]
    fn other_xml_and_broken_json_arrive_as_their_xml() {
        let entry = Element::new("entry", "http://www.w3.org/2005/Atom").with_text("x & y");
        let data: Value = serde_json::from_str(data_of(&entry).get()).unwrap();
        assert_eq!(
            data,
            json!({"xml": "<entry xmlns=\"http://www.w3.org/2005/Atom\">x &amp; y</entry>"})
        );
        let broken = Element::new("json", JSON_NS).with_text("{not json");
        let data: Value = serde_json::from_str(data_of(&broken).get()).unwrap();
        assert_eq!(
            data,
            json!({"xml": "<json xmlns=\"urn:xmpp:json:0\">{not json</json>"})
        );
    }

    #[test]
    fn a_published_item_is_its_data_with_the_xmpp_metadata_in_ext() {
        let event = NodeEvent::Published {
            node: "news".into(),
            item_id: "i1".into(),
            publisher: Some("alice@localhost".into()),
            payload: item_payload(&raw_json(r#"{"text":"hi"}"#)),
        };
        assert_eq!(
            &*event_message(&event),
            r#"{"channel":"/pubsub/news","data":{"text":"hi"},"ext":{"xmpp":{"id":"i1","node":"news","publisher":"alice@localhost"}}}"#
        );
    }

    #[test]
    fn retractions_purges_and_deletions_carry_no_data() {
        let events = [
            (
                NodeEvent::Retracted {
                    node: "n".into(),
                    item_id: "i".into(),
                },
                json!({"node": "n", "id": "i", "retracted": true}),
            ),
            (
                NodeEvent::Purged { node: "n".into() },
                json!({"node": "n", "purged": true}),
            ),
            (
                NodeEvent::Deleted { node: "n".into() },
                json!({"node": "n", "deleted": true}),
            ),
        ];
        for (event, xmpp) in events {
            let message: Value = serde_json::from_str(&event_message(&event)).unwrap();
            assert_eq!(
                message,
                json!({"channel": "/pubsub/n", "data": null, "ext": {"xmpp": xmpp}}),
                "{event:?}"
            );
        }
    }
}
