//! Publishing, retracting and retrieving items (XEP-0060 7.1, 7.2, 6.5).

use std::sync::Arc;

use starling_core::xml::Element;

use super::access::{self, Affiliation};
use super::config::NodeConfig;
use super::error::PubSubError;
use super::form::Submitted;
use super::{Actor, NodeEvent, PubSub, new_id};
use crate::stanza::Condition;
use crate::storage::StoredItem;

impl PubSub {
    /// Publishes an item; with `options` (publish-options) the node must
    /// match them, or is created with them when it does not exist.
    pub(crate) async fn publish_item(
        &self,
        actor: &Actor,
        node: &str,
        item_id: Option<String>,
        payload: Option<Element>,
        options: Option<&Submitted>,
        may_create: bool,
    ) -> Result<String, PubSubError> {
        let payload = payload.ok_or_else(|| {
            PubSubError::bad_request("payload-required").with_text("An item needs a payload")
        })?;
        let _ordered = self.order_lock(node).lock().await;
        let config = match self.store.pubsub_node(node).await? {
            Some(stored) => {
                let config = super::parse_config(&stored.config, node)?;
                if let Some(options) = options {
                    config.check_preconditions(options)?;
                }
                config
            }
            None if may_create => self.auto_create(actor, node, options).await?,
            None => return Err(PubSubError::item_not_found()),
        };
        let affiliation = self.affiliation(node, actor).await?;
        let standing = self.standing(node, &config, actor).await?;
        access::may_publish(&config, affiliation, standing)?;
        let item_id = item_id.filter(|id| !id.is_empty()).unwrap_or_else(new_id);
        let publisher = actor.user().map(|jid| jid.to_string());
        if config.persist_items {
            let item = StoredItem {
                item_id: item_id.clone(),
                publisher: publisher.clone().unwrap_or_default(),
                payload: payload.to_standalone_string(),
                stamp_ms: crate::util::time::now_ms(),
            };
            self.store
                .publish_pubsub_item(node, &item, config.stored_items())
                .await?;
        }
        crate::metrics::incr(&self.counters.published);
        let event = NodeEvent::Published {
            node: node.to_owned(),
            item_id: item_id.clone(),
            publisher,
            payload,
        };
        self.notify(node, &config, Arc::new(event), None).await;
        Ok(item_id)
    }

    /// XEP-0060 7.1.4: publishing to a missing node creates it (with the
    /// publish-options as its configuration), owned by the publisher.
    async fn auto_create(
        &self,
        actor: &Actor,
        node: &str,
        options: Option<&Submitted>,
    ) -> Result<NodeConfig, PubSubError> {
        let mut config = NodeConfig::default();
        if actor.user().is_none() {
            // Nobody owns a node an anonymous publisher made (a CometD
            // channel): anyone who may publish at all publishes to it.
            config.publish_model = super::config::PublishModel::Open;
        }
        if let Some(options) = options {
            config.apply(options)?;
        }
        let owner = actor.user().map(|jid| jid.to_string());
        if !self
            .store
            .create_pubsub_node(node, &config.to_json(), owner.as_deref())
            .await?
        {
            // Created meanwhile by another member: use what is stored.
            return self.load(node).await;
        }
        tracing::info!(
            node,
            owner = owner.as_deref().unwrap_or("-"),
            "pub/sub node auto-created"
        );
        Ok(config)
    }

    /// XEP-0060 7.2: deletes an item; `notify` asks for retract notifications
    /// even when the node does not send them by default.
    pub(crate) async fn retract(
        &self,
        actor: &Actor,
        node: &str,
        item_id: &str,
        notify: bool,
    ) -> Result<(), PubSubError> {
        let _ordered = self.order_lock(node).lock().await;
        let config = self.load(node).await?;
        let affiliation = self.affiliation(node, actor).await?;
        let item = self.store.pubsub_item(node, item_id).await?;
        let own = match (&item, actor.user()) {
            (Some(item), Some(user)) => item.publisher == user.as_str(),
            _ => false,
        };
        access::may_retract(affiliation, own)?;
        if !config.persist_items {
            return Err(PubSubError::unsupported("persistent-items"));
        }
        if item.is_none() || !self.store.retract_pubsub_item(node, item_id).await? {
            return Err(PubSubError::new(Condition::ItemNotFound).with_text("No such item"));
        }
        let event = NodeEvent::Retracted {
            node: node.to_owned(),
            item_id: item_id.to_owned(),
        };
        let force = notify.then_some(true);
        self.notify(node, &config, Arc::new(event), force).await;
        Ok(())
    }

    /// XEP-0060 6.5: items of a node, newest `max` or those with `ids`.
    pub(crate) async fn retrieve(
        &self,
        actor: &Actor,
        node: &str,
        max: Option<u64>,
        ids: &[String],
    ) -> Result<Vec<StoredItem>, PubSubError> {
        let config = self.load(node).await?;
        let affiliation = self.affiliation(node, actor).await?;
        let standing = self.standing(node, &config, actor).await?;
        access::may_retrieve(&config, affiliation, standing)?;
        if !config.persist_items {
            return Err(PubSubError::unsupported("persistent-items"));
        }
        if ids.is_empty() {
            return Ok(self.store.pubsub_items(node, max).await?);
        }
        let mut items = Vec::new();
        for id in ids {
            if let Some(item) = self.store.pubsub_item(node, id).await? {
                items.push(item);
            }
        }
        Ok(items)
    }

    /// The affiliation the actor has with an existing node.
    pub(crate) async fn affiliation_of(
        &self,
        actor: &Actor,
        node: &str,
    ) -> Result<(NodeConfig, Affiliation), PubSubError> {
        let config = self.load(node).await?;
        Ok((config, self.affiliation(node, actor).await?))
    }
}
