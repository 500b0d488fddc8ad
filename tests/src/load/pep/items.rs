//! The two PEP nodes every modern client publishes, their payloads, and how their
//! notifications are recognised.
//!
//! - XEP-0084 avatar metadata: one `<info/>` about a PNG, item id the image's SHA-1, the
//!   node's default access model (presence).
//! - OMEMO device list (`eu.siacs.conversations.axolotl.devicelist`): item `current`, one
//!   device, published with `pubsub#access_model = open` as clients do, so anyone may
//!   fetch it before a subscription exists.

use sha1::{Digest, Sha1};
use starling_core::xml::{Element, ns};

pub const AVATAR_METADATA: &str = "urn:xmpp:avatar:metadata";
pub const DEVICE_LIST: &str = "eu.siacs.conversations.axolotl.devicelist";
const OMEMO: &str = "eu.siacs.conversations.axolotl";
const PUBLISH_OPTIONS: &str = "http://jabber.org/protocol/pubsub#publish-options";

/// The nodes a login storm client wants notifications of.
pub const NODES: [&str; 2] = [AVATAR_METADATA, DEVICE_LIST];

/// Which of [`NODES`] a notification is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Node {
    Avatar,
    DeviceList,
}

impl Node {
    fn of(name: &str) -> Option<Node> {
        match name {
            AVATAR_METADATA => Some(Node::Avatar),
            DEVICE_LIST => Some(Node::DeviceList),
            _ => None,
        }
    }
}

/// The publish iq of `username`'s avatar metadata (a made-up 64×64 PNG of 4,096 bytes;
/// its id is stable per user, like a real avatar's hash).
pub fn avatar_publish(username: &str) -> Element {
    let id = avatar_id(username);
    let info = Element::new("info", AVATAR_METADATA)
        .with_attr("bytes", "4096")
        .with_attr("id", id.as_str())
        .with_attr("height", "64")
        .with_attr("width", "64")
        .with_attr("type", "image/png");
    let metadata = Element::new("metadata", AVATAR_METADATA).with_child(info);
    publish_iq(AVATAR_METADATA, &id, metadata, None)
}

/// The publish iq of a device list with the one device `device`, open to anyone.
pub fn device_list_publish(device: u32) -> Element {
    let list = Element::new("list", OMEMO)
        .with_child(Element::new("device", OMEMO).with_attr("id", device.to_string()));
    let options = publish_options(&[("pubsub#access_model", "open")]);
    publish_iq(DEVICE_LIST, "current", list, Some(options))
}

/// A device id for user number `number`: OMEMO ids are 31-bit and non-zero.
pub fn device_id(number: u64) -> u32 {
    u32::try_from(number % 0x7fff_ffff).unwrap_or(0) + 1
}

/// The SHA-1 (hex) a client would give its avatar image.
fn avatar_id(username: &str) -> String {
    Sha1::digest(format!("avatar of {username}").as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

fn publish_iq(node: &str, item_id: &str, payload: Element, options: Option<Element>) -> Element {
    let publish = Element::new("publish", ns::PUBSUB)
        .with_attr("node", node)
        .with_child(
            Element::new("item", ns::PUBSUB)
                .with_attr("id", item_id)
                .with_child(payload),
        );
    let mut pubsub = Element::new("pubsub", ns::PUBSUB).with_child(publish);
    if let Some(options) = options {
        pubsub.push_child(options);
    }
    Element::new("iq", ns::CLIENT)
        .with_attr("type", "set")
        .with_child(pubsub)
}

/// `<publish-options/>` with a submitted form of these fields (XEP-0060 7.1.5).
fn publish_options(fields: &[(&str, &str)]) -> Element {
    let field = |var: &str, value: &str| {
        Element::new("field", ns::XDATA)
            .with_attr("var", var)
            .with_child(Element::new("value", ns::XDATA).with_text(value))
    };
    let mut form = Element::new("x", ns::XDATA)
        .with_attr("type", "submit")
        .with_child(field("FORM_TYPE", PUBLISH_OPTIONS).with_attr("type", "hidden"));
    for (var, value) in fields {
        form.push_child(field(var, value));
    }
    Element::new("publish-options", ns::PUBSUB).with_child(form)
}

/// A PEP notification of an item of one of [`NODES`]: the publisher (the bare JID the
/// message is from) and the node. `None` for anything else, retractions included.
pub fn notification(stanza: &Element) -> Option<(&str, Node)> {
    if !stanza.is("message", ns::CLIENT) {
        return None;
    }
    let items = stanza
        .child("event", ns::PUBSUB_EVENT)?
        .child("items", ns::PUBSUB_EVENT)?;
    let node = Node::of(items.attr("node")?)?;
    items.child("item", ns::PUBSUB_EVENT)?;
    Some((stanza.attr("from")?, node))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form_field(form: &Element, var: &str) -> Option<String> {
        form.children()
            .find(|field| field.attr("var") == Some(var))
            .and_then(|field| field.child("value", ns::XDATA))
            .map(Element::text)
    }

    #[test]
    fn avatar_metadata_names_its_image_by_hash() {
        let iq = avatar_publish("load7");
        assert_eq!(iq.attr("type"), Some("set"));
        let publish = iq
            .child("pubsub", ns::PUBSUB)
            .and_then(|pubsub| pubsub.child("publish", ns::PUBSUB))
            .unwrap();
        assert_eq!(publish.attr("node"), Some(AVATAR_METADATA));
        let item = publish.child("item", ns::PUBSUB).unwrap();
        let info = item
            .child("metadata", AVATAR_METADATA)
            .and_then(|metadata| metadata.child("info", AVATAR_METADATA))
            .unwrap();
        assert_eq!(item.attr("id"), info.attr("id"));
        assert_eq!(info.attr("id").unwrap().len(), 40);
        assert_eq!(info.attr("type"), Some("image/png"));
        // No publish-options: the node keeps its default access model.
        assert!(
            !iq.child("pubsub", ns::PUBSUB)
                .unwrap()
                .has_child("publish-options", ns::PUBSUB)
        );
        assert_ne!(avatar_id("load7"), avatar_id("load8"));
    }

    #[test]
    fn device_list_is_open_through_publish_options() {
        let iq = device_list_publish(device_id(41));
        let pubsub = iq.child("pubsub", ns::PUBSUB).unwrap();
        let item = pubsub
            .child("publish", ns::PUBSUB)
            .filter(|publish| publish.attr("node") == Some(DEVICE_LIST))
            .and_then(|publish| publish.child("item", ns::PUBSUB))
            .unwrap();
        assert_eq!(item.attr("id"), Some("current"));
        let device = item
            .child("list", OMEMO)
            .and_then(|list| list.child("device", OMEMO))
            .unwrap();
        assert_eq!(device.attr("id"), Some("42"));
        let form = pubsub
            .child("publish-options", ns::PUBSUB)
            .and_then(|options| options.child("x", ns::XDATA))
            .unwrap();
        assert_eq!(form.attr("type"), Some("submit"));
        assert_eq!(
            form_field(form, "FORM_TYPE").as_deref(),
            Some(PUBLISH_OPTIONS)
        );
        assert_eq!(
            form_field(form, "pubsub#access_model").as_deref(),
            Some("open")
        );
    }

    #[test]
    fn device_ids_are_31_bit_and_never_zero() {
        assert_eq!(device_id(0), 1);
        assert_eq!(device_id(0x7fff_ffff), 1);
        assert!(device_id(u64::MAX) <= 0x7fff_ffff);
    }

    #[test]
    fn recognises_notifications_of_the_two_nodes_only() {
        let event = |node: &str, child: &str| {
            Element::new("message", ns::CLIENT)
                .with_attr("from", "load2@localhost")
                .with_child(
                    Element::new("event", ns::PUBSUB_EVENT).with_child(
                        Element::new("items", ns::PUBSUB_EVENT)
                            .with_attr("node", node)
                            .with_child(
                                Element::new(child.to_owned(), ns::PUBSUB_EVENT)
                                    .with_attr("id", "x"),
                            ),
                    ),
                )
        };
        assert_eq!(
            notification(&event(AVATAR_METADATA, "item")),
            Some(("load2@localhost", Node::Avatar))
        );
        assert_eq!(
            notification(&event(DEVICE_LIST, "item")),
            Some(("load2@localhost", Node::DeviceList))
        );
        assert_eq!(notification(&event("urn:xmpp:other", "item")), None);
        assert_eq!(notification(&event(DEVICE_LIST, "retract")), None);
        assert_eq!(notification(&Element::new("presence", ns::CLIENT)), None);
    }
}
