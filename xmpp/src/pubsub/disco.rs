//! XEP-0030 on the service and its nodes (XEP-0060 5.1-5.5): the service's
//! identity and features, node metadata, nodes as items and a node's items.

use starling_core::jid::FullJid;
use starling_core::xml::{Element, ns};

use super::config::{Choice, NodeConfig};
use super::error::PubSubError;
use super::form::FormBuilder;
use super::{Actor, PubSub};

/// `http://jabber.org/protocol/pubsub#<feature>` features the service has.
const FEATURES: &[&str] = &[
    "access-open",
    "access-presence",
    "access-whitelist",
    "auto-create",
    "config-node",
    "create-and-configure",
    "create-nodes",
    "delete-items",
    "delete-nodes",
    "instant-nodes",
    "item-ids",
    "last-published",
    "manage-affiliations",
    "manage-subscriptions",
    "member-affiliation",
    "meta-data",
    "modify-affiliations",
    "outcast-affiliation",
    "persistent-items",
    "publish",
    "publish-only-affiliation",
    "publish-options",
    "publisher-affiliation",
    "purge-nodes",
    "retract-items",
    "retrieve-affiliations",
    "retrieve-default",
    "retrieve-items",
    "retrieve-subscriptions",
    "subscribe",
    "subscription-options",
];

const META_DATA: &str = "http://jabber.org/protocol/pubsub#meta-data";

/// The features as disco advertises them.
pub fn features() -> Vec<String> {
    let mut all = vec![ns::PUBSUB.to_owned()];
    all.extend(FEATURES.iter().map(|f| format!("{}#{f}", ns::PUBSUB)));
    all
}

fn feature(var: &str) -> Element {
    Element::new("feature", ns::DISCO_INFO).with_attr("var", var)
}

fn identity(kind: &str) -> Element {
    Element::new("identity", ns::DISCO_INFO)
        .with_attr("category", "pubsub")
        .with_attr("type", kind)
}

pub(crate) async fn info(pubsub: &PubSub, request: &Element) -> Result<Element, PubSubError> {
    let mut query = Element::new("query", ns::DISCO_INFO);
    match request.attr("node") {
        None => {
            query.push_child(identity("service").with_attr("name", "Publish-Subscribe"));
            query.push_child(feature(ns::DISCO_INFO));
            query.push_child(feature(ns::DISCO_ITEMS));
            for var in features() {
                query.push_child(feature(&var));
            }
        }
        Some(node) => {
            let config = pubsub.metadata(node).await?;
            query.set_attr("node", node);
            query.push_child(identity("leaf"));
            query.push_child(feature(ns::PUBSUB));
            query.push_child(feature(ns::DISCO_INFO));
            query.push_child(feature(ns::DISCO_ITEMS));
            query.push_child(meta_data(&config));
        }
    }
    Ok(query)
}

/// XEP-0060 5.4: node metadata as a result form.
fn meta_data(config: &NodeConfig) -> Element {
    let mut form = FormBuilder::new("result", META_DATA);
    form.field("pubsub#title", "text-single", None, &[&config.title]);
    let access = config.access_model.name();
    form.field("pubsub#access_model", "list-single", None, &[access]);
    form.build()
}

pub(crate) async fn items(
    pubsub: &PubSub,
    requester: &FullJid,
    request: &Element,
) -> Result<Element, PubSubError> {
    let mut query = Element::new("query", ns::DISCO_ITEMS);
    match request.attr("node") {
        None => {
            for node in pubsub.node_names().await? {
                query.push_child(
                    Element::new("item", ns::DISCO_ITEMS)
                        .with_attr("jid", pubsub.service())
                        .with_attr("node", node),
                );
            }
        }
        Some(node) => {
            query.set_attr("node", node);
            // XEP-0060 5.5: item ids, to those who may retrieve the items.
            let actor = Actor::User(requester.to_bare());
            for item in pubsub.retrieve(&actor, node, None, &[]).await? {
                query.push_child(
                    Element::new("item", ns::DISCO_ITEMS)
                        .with_attr("jid", pubsub.service())
                        .with_attr("name", item.item_id),
                );
            }
        }
    }
    Ok(query)
}
