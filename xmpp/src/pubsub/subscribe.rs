//! Subscriptions (XEP-0060 6.1, 6.2, 6.3): subscribe, unsubscribe,
//! subscription options, and the last item sent on subscribe.

use starling_core::jid::{FullJid, Jid};
use starling_core::xml::Element;

use super::access::{self, Affiliation};
use super::config::SendLast;
use super::error::PubSubError;
use super::{Actor, NodeEvent, PubSub, new_id};
use crate::stanza::Condition;
use crate::storage::StoredSubscription;

/// The form type of subscription options.
pub(super) const SUBSCRIBE_OPTIONS: &str = "http://jabber.org/protocol/pubsub#subscribe_options";

/// XEP-0060 6.1.3.1: the subscribed JID must be the requester's bare or full JID.
fn check_jid(requester: &FullJid, jid: &Jid) -> Result<(), PubSubError> {
    let own = match jid.try_as_full() {
        Ok(full) => full == requester,
        Err(bare) => *bare == requester.to_bare(),
    };
    if own {
        Ok(())
    } else {
        Err(PubSubError::bad_request("invalid-jid")
            .with_text("The JID does not match the requesting entity"))
    }
}

impl PubSub {
    /// Subscribes `jid` on behalf of `requester`; returns the subscription.
    /// The last published item, when the node sends it, goes to the
    /// requester's session afterwards.
    pub(crate) async fn subscribe(
        &self,
        requester: &FullJid,
        node: &str,
        jid: &Jid,
    ) -> Result<StoredSubscription, PubSubError> {
        check_jid(requester, jid)?;
        let actor = Actor::User(requester.to_bare());
        let (config, affiliation) = self.affiliation_of(&actor, node).await?;
        let standing = self.standing(node, &config, &actor).await?;
        access::may_subscribe(&config, affiliation, standing)?;
        let subscription = match self.store.pubsub_subscription(node, jid.as_str()).await? {
            // Subscribing again answers with the existing subscription.
            Some(existing) => existing,
            None => {
                let subscription = StoredSubscription {
                    node: node.to_owned(),
                    jid: jid.to_string(),
                    subid: new_id(),
                    state: "subscribed".to_owned(),
                    deliver: true,
                };
                self.store.set_pubsub_subscription(&subscription).await?;
                subscription
            }
        };
        if config.send_last_published_item != SendLast::Never && config.persist_items {
            self.send_last_item(node, &config, requester).await;
        }
        Ok(subscription)
    }

    /// XEP-0060 6.1.7: the newest item, to the session that subscribed.
    async fn send_last_item(&self, node: &str, config: &super::config::NodeConfig, to: &FullJid) {
        let item = match self.store.pubsub_items(node, Some(1)).await {
            Ok(mut items) => items.pop(),
            Err(error) => {
                tracing::error!(node, %error, "last item unreadable; not sent on subscribe");
                return;
            }
        };
        let Some(item) = item else {
            return;
        };
        let Ok(payload) = crate::stream::parse_element(item.payload.as_bytes()) else {
            tracing::error!(node, item = item.item_id, "stored item unreadable");
            return;
        };
        let event = NodeEvent::Published {
            node: node.to_owned(),
            item_id: item.item_id,
            publisher: (!item.publisher.is_empty()).then_some(item.publisher),
            payload,
        };
        let mut message = self.notification(config, &event);
        message.set_attr("to", to.as_str());
        message.push_child(
            Element::new("delay", starling_core::xml::ns::DELAY)
                .with_attr("stamp", crate::util::time::xep0082(item.stamp_ms))
                .with_attr("from", self.service.as_str()),
        );
        let Some(server) = self.server.upgrade() else {
            return;
        };
        if let Ok(stanza) = crate::stanza::Stanza::from_server(message) {
            crate::router::route(&server, stanza).await;
        }
    }

    /// XEP-0060 6.2: removes `jid`'s subscription (matching `subid` if given).
    pub(crate) async fn unsubscribe(
        &self,
        requester: &FullJid,
        node: &str,
        jid: &Jid,
        subid: Option<&str>,
    ) -> Result<(), PubSubError> {
        let actor = Actor::User(requester.to_bare());
        let (_, affiliation) = self.affiliation_of(&actor, node).await?;
        if check_jid(requester, jid).is_err() && affiliation != Affiliation::Owner {
            return Err(PubSubError::with(Condition::BadRequest, "invalid-jid")
                .with_text("The JID does not match the requesting entity"));
        }
        let Some(existing) = self.store.pubsub_subscription(node, jid.as_str()).await? else {
            return Err(
                PubSubError::with(Condition::UnexpectedRequest, "not-subscribed")
                    .with_text("No subscription for this JID"),
            );
        };
        if let Some(subid) = subid
            && subid != existing.subid
        {
            return Err(PubSubError::with(Condition::NotAcceptable, "invalid-subid"));
        }
        self.store
            .delete_pubsub_subscription(node, jid.as_str())
            .await?;
        Ok(())
    }

    /// The subscription options' subject: `jid`'s subscription to `node`,
    /// which only that entity (or an owner) may see and change.
    pub(crate) async fn subscription_for_options(
        &self,
        requester: &FullJid,
        node: &str,
        jid: &Jid,
        subid: Option<&str>,
    ) -> Result<StoredSubscription, PubSubError> {
        let actor = Actor::User(requester.to_bare());
        let (_, affiliation) = self.affiliation_of(&actor, node).await?;
        if check_jid(requester, jid).is_err() && affiliation != Affiliation::Owner {
            return Err(PubSubError::forbidden());
        }
        let Some(existing) = self.store.pubsub_subscription(node, jid.as_str()).await? else {
            return Err(PubSubError::with(
                Condition::UnexpectedRequest,
                "not-subscribed",
            ));
        };
        if let Some(subid) = subid
            && subid != existing.subid
        {
            return Err(PubSubError::with(Condition::NotAcceptable, "invalid-subid"));
        }
        Ok(existing)
    }

    /// Stores changed subscription options.
    pub(crate) async fn set_options(
        &self,
        subscription: &StoredSubscription,
    ) -> Result<(), PubSubError> {
        Ok(self.store.set_pubsub_subscription(subscription).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriber_jid_must_be_the_requester() {
        let requester = FullJid::new("a@x/r").unwrap();
        check_jid(&requester, &Jid::new("a@x").unwrap()).unwrap();
        check_jid(&requester, &Jid::new("a@x/r").unwrap()).unwrap();
        let error = check_jid(&requester, &Jid::new("a@x/other").unwrap()).unwrap_err();
        assert_eq!(error.pubsub, Some("invalid-jid"));
        assert!(check_jid(&requester, &Jid::new("b@x").unwrap()).is_err());
    }
}
