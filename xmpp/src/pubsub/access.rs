//! Who may do what on a node (XEP-0060 4.1 affiliations, 4.5 access models):
//! pure decisions from the actor's affiliation and standing, with the error
//! each refusal must carry.

use super::config::{AccessModel, NodeConfig, PublishModel};
use super::error::PubSubError;
use crate::stanza::Condition;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Affiliation {
    Outcast,
    None,
    Member,
    PublishOnly,
    Publisher,
    Owner,
}

impl Affiliation {
    pub fn parse(value: &str) -> Option<Affiliation> {
        Some(match value {
            "owner" => Affiliation::Owner,
            "publisher" => Affiliation::Publisher,
            "publish-only" => Affiliation::PublishOnly,
            "member" => Affiliation::Member,
            "none" => Affiliation::None,
            "outcast" => Affiliation::Outcast,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Affiliation::Owner => "owner",
            Affiliation::Publisher => "publisher",
            Affiliation::PublishOnly => "publish-only",
            Affiliation::Member => "member",
            Affiliation::None => "none",
            Affiliation::Outcast => "outcast",
        }
    }

    /// Owners, publishers and members see everything an access model guards.
    fn is_insider(self) -> bool {
        matches!(
            self,
            Affiliation::Owner | Affiliation::Publisher | Affiliation::Member
        )
    }
}

/// What the service knows about the actor besides its affiliation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Standing {
    /// Has a subscription to the node.
    pub subscribed: bool,
    /// Has a presence subscription to one of the node's owners.
    pub presence: bool,
}

/// Subscribing and retrieving items share the access model's rules
/// (XEP-0060 6.1.3 and 6.5.9): [`may_retrieve`] is this same check.
pub fn may_subscribe(
    config: &NodeConfig,
    affiliation: Affiliation,
    standing: Standing,
) -> Result<(), PubSubError> {
    if affiliation == Affiliation::Outcast {
        return Err(PubSubError::forbidden().with_text("You are banned from this node"));
    }
    if affiliation.is_insider() {
        return Ok(());
    }
    if affiliation == Affiliation::PublishOnly {
        return Err(PubSubError::forbidden().with_text("Publish-only affiliation"));
    }
    match config.access_model {
        AccessModel::Open => Ok(()),
        AccessModel::Presence if standing.presence => Ok(()),
        AccessModel::Presence => Err(PubSubError::with(
            Condition::NotAuthorized,
            "presence-subscription-required",
        )),
        AccessModel::Whitelist => Err(PubSubError::with(Condition::NotAllowed, "closed-node")),
    }
}

pub use self::may_subscribe as may_retrieve;

/// XEP-0060 7.1.3.1: an entity without the right to publish gets `<forbidden/>`.
pub fn may_publish(
    config: &NodeConfig,
    affiliation: Affiliation,
    standing: Standing,
) -> Result<(), PubSubError> {
    let allowed = match affiliation {
        Affiliation::Outcast => false,
        Affiliation::Owner | Affiliation::Publisher | Affiliation::PublishOnly => true,
        Affiliation::Member | Affiliation::None => match config.publish_model {
            PublishModel::Open => true,
            PublishModel::Subscribers => standing.subscribed,
            PublishModel::Publishers => false,
        },
    };
    if allowed {
        Ok(())
    } else {
        Err(PubSubError::forbidden().with_text("Not allowed to publish to this node"))
    }
}

/// XEP-0060 7.2.3.1: owners and publishers retract any item, others only
/// their own.
pub fn may_retract(affiliation: Affiliation, own_item: bool) -> Result<(), PubSubError> {
    match affiliation {
        Affiliation::Owner | Affiliation::Publisher => Ok(()),
        Affiliation::PublishOnly if own_item => Ok(()),
        _ => Err(PubSubError::forbidden().with_text("Not allowed to retract this item")),
    }
}

/// Configure, delete, purge, manage subscriptions and affiliations.
pub fn must_own(affiliation: Affiliation) -> Result<(), PubSubError> {
    if affiliation == Affiliation::Owner {
        Ok(())
    } else {
        Err(PubSubError::forbidden().with_text("Only an owner may do this"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_access(model: AccessModel) -> NodeConfig {
        NodeConfig {
            access_model: model,
            ..NodeConfig::default()
        }
    }

    #[test]
    fn access_models_decide_for_outsiders_only() {
        let outsider = Standing::default();
        let whitelist = with_access(AccessModel::Whitelist);
        let error = may_subscribe(&whitelist, Affiliation::None, outsider).unwrap_err();
        assert_eq!(
            (error.condition, error.pubsub),
            (Condition::NotAllowed, Some("closed-node"))
        );
        may_subscribe(&whitelist, Affiliation::Member, outsider).unwrap();
        let presence = with_access(AccessModel::Presence);
        let error = may_retrieve(&presence, Affiliation::None, outsider).unwrap_err();
        assert_eq!(
            (error.condition, error.pubsub),
            (
                Condition::NotAuthorized,
                Some("presence-subscription-required")
            )
        );
        let contact = Standing {
            presence: true,
            ..outsider
        };
        may_retrieve(&presence, Affiliation::None, contact).unwrap();
        may_subscribe(&NodeConfig::default(), Affiliation::None, outsider).unwrap();
    }

    #[test]
    fn outcasts_and_publish_only_are_forbidden_to_subscribe() {
        let open = NodeConfig::default();
        for affiliation in [Affiliation::Outcast, Affiliation::PublishOnly] {
            let error = may_subscribe(&open, affiliation, Standing::default()).unwrap_err();
            assert_eq!(error.condition, Condition::Forbidden);
        }
    }

    #[test]
    fn publish_models() {
        let mut config = NodeConfig::default();
        let none = Standing::default();
        assert!(may_publish(&config, Affiliation::None, none).is_err());
        may_publish(&config, Affiliation::PublishOnly, none).unwrap();
        config.publish_model = PublishModel::Subscribers;
        assert!(may_publish(&config, Affiliation::None, none).is_err());
        let subscriber = Standing {
            subscribed: true,
            ..none
        };
        may_publish(&config, Affiliation::None, subscriber).unwrap();
        config.publish_model = PublishModel::Open;
        may_publish(&config, Affiliation::None, none).unwrap();
        assert!(may_publish(&config, Affiliation::Outcast, none).is_err());
    }

    #[test]
    fn retract_and_owner_rights() {
        may_retract(Affiliation::Publisher, false).unwrap();
        may_retract(Affiliation::PublishOnly, true).unwrap();
        assert!(may_retract(Affiliation::PublishOnly, false).is_err());
        assert!(may_retract(Affiliation::None, true).is_err());
        must_own(Affiliation::Owner).unwrap();
        assert_eq!(
            must_own(Affiliation::Publisher).unwrap_err().condition,
            Condition::Forbidden
        );
        assert_eq!(
            Affiliation::parse("publish-only"),
            Some(Affiliation::PublishOnly)
        );
    }
}
