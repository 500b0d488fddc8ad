//! Node lifecycle and owner use cases (XEP-0060 8): create, configure,
//! delete, purge, and managing subscriptions and affiliations; plus an
//! entity's own subscriptions and affiliations (5.6, 5.7).

use std::sync::Arc;

use starling_core::jid::{BareJid, Jid};

use super::access::{self, Affiliation};
use super::config::NodeConfig;
use super::error::PubSubError;
use super::form::Submitted;
use super::{Actor, NodeEvent, PubSub, new_id};
use crate::stanza::Condition;
use crate::storage::StoredSubscription;

impl PubSub {
    /// XEP-0060 8.1: creates `node` (an instant node when `None`) owned by
    /// `owner`, configured by `form` when given; returns the node's name.
    pub(crate) async fn create(
        &self,
        owner: &BareJid,
        node: Option<&str>,
        form: Option<&Submitted>,
    ) -> Result<String, PubSubError> {
        let mut config = NodeConfig::default();
        if let Some(form) = form {
            config.apply(form)?;
        }
        let name = match node {
            Some("") => {
                return Err(PubSubError::bad_request("nodeid-required"));
            }
            Some(name) => name.to_owned(),
            None => new_id(),
        };
        if !self
            .store
            .create_pubsub_node(&name, &config.to_json(), Some(owner.as_str()))
            .await?
        {
            return Err(PubSubError::new(Condition::Conflict).with_text("The node exists"));
        }
        tracing::info!(node = name, %owner, "pub/sub node created");
        Ok(name)
    }

    /// XEP-0060 8.2: the node's configuration, for its owner.
    pub(crate) async fn config_of(
        &self,
        actor: &Actor,
        node: &str,
    ) -> Result<NodeConfig, PubSubError> {
        let (config, affiliation) = self.affiliation_of(actor, node).await?;
        access::must_own(affiliation)?;
        Ok(config)
    }

    /// XEP-0060 8.2.4: applies a submitted configuration form.
    pub(crate) async fn configure(
        &self,
        actor: &Actor,
        node: &str,
        form: &Submitted,
    ) -> Result<(), PubSubError> {
        let _ordered = self.order_lock(node).lock().await;
        let mut config = self.config_of(actor, node).await?;
        config.apply(form)?;
        if !self
            .store
            .set_pubsub_config(node, &config.to_json())
            .await?
        {
            return Err(PubSubError::item_not_found());
        }
        if config.notify_config {
            self.notify_config(node, &config).await;
        }
        Ok(())
    }

    /// XEP-0060 8.4: deletes a node; subscribers learn of it (notify_delete).
    pub(crate) async fn delete(&self, actor: &Actor, node: &str) -> Result<(), PubSubError> {
        let _ordered = self.order_lock(node).lock().await;
        let config = self.config_of(actor, node).await?;
        let subscriptions = self.store.pubsub_node_subscriptions(node).await?;
        if !self.store.delete_pubsub_node(node).await? {
            return Err(PubSubError::item_not_found());
        }
        tracing::info!(node, "pub/sub node deleted");
        let event = NodeEvent::Deleted {
            node: node.to_owned(),
        };
        self.notify_to(node, &config, Arc::new(event), None, &subscriptions);
        Ok(())
    }

    /// XEP-0060 8.5: removes every item of a node.
    pub(crate) async fn purge(&self, actor: &Actor, node: &str) -> Result<(), PubSubError> {
        let _ordered = self.order_lock(node).lock().await;
        let config = self.config_of(actor, node).await?;
        if !config.persist_items {
            return Err(PubSubError::unsupported("persistent-items"));
        }
        self.store.purge_pubsub_items(node).await?;
        let event = NodeEvent::Purged {
            node: node.to_owned(),
        };
        self.notify(node, &config, Arc::new(event), None).await;
        Ok(())
    }

    /// XEP-0060 5.6: the user's subscriptions, optionally to one node.
    pub(crate) async fn own_subscriptions(
        &self,
        user: &BareJid,
        node: Option<&str>,
    ) -> Result<Vec<StoredSubscription>, PubSubError> {
        let mut subscriptions = self.store.pubsub_user_subscriptions(user.as_str()).await?;
        if let Some(node) = node {
            self.load(node).await?;
            subscriptions.retain(|sub| sub.node == node);
        }
        Ok(subscriptions)
    }

    /// XEP-0060 5.7: the user's affiliations, optionally with one node.
    pub(crate) async fn own_affiliations(
        &self,
        user: &BareJid,
        node: Option<&str>,
    ) -> Result<Vec<(String, String)>, PubSubError> {
        let mut affiliations = self.store.pubsub_user_affiliations(user.as_str()).await?;
        if let Some(node) = node {
            self.load(node).await?;
            affiliations.retain(|(name, _)| name == node);
        }
        Ok(affiliations)
    }

    /// XEP-0060 8.8.1: all subscriptions to a node, for its owner.
    pub(crate) async fn node_subscriptions(
        &self,
        actor: &Actor,
        node: &str,
    ) -> Result<Vec<StoredSubscription>, PubSubError> {
        self.config_of(actor, node).await?;
        Ok(self.store.pubsub_node_subscriptions(node).await?)
    }

    /// XEP-0060 8.8.2: the owner sets subscription states (`none` removes).
    /// All entries are checked before any is applied.
    pub(crate) async fn set_subscriptions(
        &self,
        actor: &Actor,
        node: &str,
        changes: &[(Jid, String)],
    ) -> Result<(), PubSubError> {
        self.config_of(actor, node).await?;
        for (_, state) in changes {
            if !matches!(state.as_str(), "subscribed" | "none") {
                return Err(PubSubError::new(Condition::NotAcceptable)
                    .with_text(format!("Unsupported subscription state {state:?}")));
            }
        }
        for (jid, state) in changes {
            if state == "none" {
                self.store
                    .delete_pubsub_subscription(node, jid.as_str())
                    .await?;
                continue;
            }
            let existing = self.store.pubsub_subscription(node, jid.as_str()).await?;
            let subscription = StoredSubscription {
                node: node.to_owned(),
                jid: jid.to_string(),
                subid: existing
                    .as_ref()
                    .map_or_else(new_id, |sub| sub.subid.clone()),
                state: state.clone(),
                deliver: existing.is_none_or(|sub| sub.deliver),
            };
            self.store.set_pubsub_subscription(&subscription).await?;
        }
        Ok(())
    }

    /// XEP-0060 8.9.1: all affiliations with a node, for its owner.
    pub(crate) async fn node_affiliations(
        &self,
        actor: &Actor,
        node: &str,
    ) -> Result<Vec<(String, String)>, PubSubError> {
        self.config_of(actor, node).await?;
        Ok(self.store.pubsub_node_affiliations(node).await?)
    }

    /// XEP-0060 8.9.2: the owner sets affiliations. A change that would
    /// leave the node without an owner is `<not-acceptable/>` (8.9.2.4).
    pub(crate) async fn set_affiliations(
        &self,
        actor: &Actor,
        node: &str,
        changes: &[(BareJid, Affiliation)],
    ) -> Result<(), PubSubError> {
        self.config_of(actor, node).await?;
        let mut owners: Vec<String> = self
            .store
            .pubsub_node_affiliations(node)
            .await?
            .into_iter()
            .filter(|(_, affiliation)| affiliation == "owner")
            .map(|(jid, _)| jid)
            .collect();
        for (jid, affiliation) in changes {
            owners.retain(|owner| owner != jid.as_str());
            if *affiliation == Affiliation::Owner {
                owners.push(jid.to_string());
            }
        }
        if owners.is_empty() {
            return Err(
                PubSubError::new(Condition::NotAcceptable).with_text("A node must keep an owner")
            );
        }
        for (jid, affiliation) in changes {
            let value = (*affiliation != Affiliation::None).then_some(affiliation.as_str());
            self.store
                .set_pubsub_affiliation(node, jid.as_str(), value)
                .await?;
            if *affiliation == Affiliation::Outcast {
                // An outcast loses its subscriptions (XEP-0060 4.1 table).
                for sub in self.store.pubsub_node_subscriptions(node).await? {
                    if Jid::new(&sub.jid).is_ok_and(|sub_jid| sub_jid.to_bare() == *jid) {
                        self.store
                            .delete_pubsub_subscription(node, &sub.jid)
                            .await?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Lists node names, for disco#items on the service.
    pub(crate) async fn node_names(&self) -> Result<Vec<String>, PubSubError> {
        Ok(self.store.pubsub_nodes().await?)
    }

    /// A node's configuration, for disco#info (no access check: metadata).
    pub(crate) async fn metadata(&self, node: &str) -> Result<NodeConfig, PubSubError> {
        self.load(node).await
    }
}
