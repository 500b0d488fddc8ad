//! A node's configuration (XEP-0060 16.4.4 `pubsub#node_config`): what the
//! owner sets with the configure form or publish-options, stored as JSON.

use serde::{Deserialize, Serialize};
use starling_core::xml::Element;

use super::error::PubSubError;
use super::form::{FormBuilder, Submitted, parse_bool};
use crate::stanza::Condition;

pub const NODE_CONFIG: &str = "http://jabber.org/protocol/pubsub#node_config";
pub const PUBLISH_OPTIONS: &str = "http://jabber.org/protocol/pubsub#publish-options";

/// Who may subscribe and retrieve items.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessModel {
    Open,
    /// Contacts with a presence subscription to an owner.
    Presence,
    /// Owners, members and publishers only.
    Whitelist,
}

/// Who may publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PublishModel {
    Publishers,
    Subscribers,
    Open,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SendLast {
    Never,
    OnSub,
    OnSubAndPresence,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotificationType {
    Headline,
    Normal,
}

/// A list-single field's values: each variant by its name in the form
/// (the same name as in the stored JSON).
pub trait Choice: Copy + PartialEq + 'static {
    const CHOICES: &'static [(&'static str, Self)];

    fn name(self) -> &'static str {
        Self::CHOICES
            .iter()
            .find(|(_, choice)| *choice == self)
            .map_or("", |(name, _)| name)
    }

    /// The form's options, in order.
    fn names() -> Vec<&'static str> {
        Self::CHOICES.iter().map(|(name, _)| *name).collect()
    }

    /// The variant a submitted value names; `<not-acceptable/>` for
    /// anything else.
    fn parse(var: &str, value: &str) -> Result<Self, PubSubError> {
        Self::CHOICES
            .iter()
            .find(|(name, _)| *name == value)
            .map(|(_, choice)| *choice)
            .ok_or_else(|| not_acceptable(var, value))
    }
}

/// `impl Choice` from each form name and its variant.
macro_rules! choices {
    ($ty:ident { $($name:literal => $variant:ident),+ $(,)? }) => {
        impl Choice for $ty {
            const CHOICES: &'static [(&'static str, Self)] = &[$(($name, $ty::$variant)),+];
        }
    };
}

choices!(AccessModel { "open" => Open, "presence" => Presence, "whitelist" => Whitelist });

choices!(PublishModel { "publishers" => Publishers, "subscribers" => Subscribers, "open" => Open });

choices!(SendLast {
    "never" => Never,
    "on_sub" => OnSub,
    "on_sub_and_presence" => OnSubAndPresence,
});

choices!(NotificationType { "headline" => Headline, "normal" => Normal });

/// Items kept when `max_items` is "max".
pub const MAX_ITEMS_LIMIT: u64 = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeConfig {
    pub title: String,
    pub access_model: AccessModel,
    pub publish_model: PublishModel,
    /// Items kept; [`MAX_ITEMS_LIMIT`] means "max".
    pub max_items: u64,
    pub persist_items: bool,
    pub deliver_notifications: bool,
    pub deliver_payloads: bool,
    pub notify_config: bool,
    pub notify_delete: bool,
    pub notify_retract: bool,
    pub send_last_published_item: SendLast,
    pub notification_type: NotificationType,
}

impl Default for NodeConfig {
    fn default() -> NodeConfig {
        NodeConfig {
            title: String::new(),
            access_model: AccessModel::Open,
            publish_model: PublishModel::Publishers,
            max_items: 10,
            persist_items: true,
            deliver_notifications: true,
            deliver_payloads: true,
            notify_config: false,
            notify_delete: true,
            notify_retract: true,
            send_last_published_item: SendLast::OnSub,
            notification_type: NotificationType::Headline,
        }
    }
}

fn not_acceptable(var: &str, value: &str) -> PubSubError {
    PubSubError::new(Condition::NotAcceptable)
        .with_text(format!("Unsupported value {value:?} for {var}"))
}

fn boolean(var: &str, value: &str) -> Result<bool, PubSubError> {
    parse_bool(value).ok_or_else(|| not_acceptable(var, value))
}

impl NodeConfig {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned())
    }

    /// Reads a stored configuration; fields added later take their defaults.
    pub fn from_json(json: &str) -> Option<NodeConfig> {
        serde_json::from_str(json).ok()
    }

    /// Items the store keeps for the node (none for a transient node).
    pub fn stored_items(&self) -> Option<u64> {
        Some(if self.persist_items {
            self.max_items
        } else {
            0
        })
    }

    /// Applies a submitted `pubsub#node_config` form; unknown fields and
    /// values are `<not-acceptable/>` (XEP-0060 8.2.5.3), so nothing half-applies.
    pub fn apply(&mut self, form: &Submitted) -> Result<(), PubSubError> {
        if let Some(form_type) = &form.form_type
            && form_type != NODE_CONFIG
            && form_type != PUBLISH_OPTIONS
        {
            return Err(PubSubError::new(Condition::BadRequest)
                .with_text(format!("Unexpected FORM_TYPE {form_type}")));
        }
        let mut next = self.clone();
        for (var, values) in &form.fields {
            let value = values.first().map(String::as_str).unwrap_or("");
            match var.as_str() {
                "pubsub#title" => next.title = value.to_owned(),
                "pubsub#access_model" => next.access_model = Choice::parse(var, value)?,
                "pubsub#publish_model" => next.publish_model = Choice::parse(var, value)?,
                "pubsub#max_items" => {
                    next.max_items = match value {
                        "max" => MAX_ITEMS_LIMIT,
                        number => match number.parse::<u64>() {
                            Ok(n) if n <= MAX_ITEMS_LIMIT => n,
                            _ => return Err(not_acceptable(var, value)),
                        },
                    }
                }
                "pubsub#persist_items" => next.persist_items = boolean(var, value)?,
                "pubsub#deliver_notifications" => next.deliver_notifications = boolean(var, value)?,
                "pubsub#deliver_payloads" => next.deliver_payloads = boolean(var, value)?,
                "pubsub#notify_config" => next.notify_config = boolean(var, value)?,
                "pubsub#notify_delete" => next.notify_delete = boolean(var, value)?,
                "pubsub#notify_retract" => next.notify_retract = boolean(var, value)?,
                "pubsub#send_last_published_item" => {
                    next.send_last_published_item = Choice::parse(var, value)?;
                }
                "pubsub#notification_type" => next.notification_type = Choice::parse(var, value)?,
                _ => {
                    return Err(PubSubError::new(Condition::NotAcceptable)
                        .with_text(format!("Unsupported configuration field {var}")));
                }
            }
        }
        *self = next;
        Ok(())
    }

    /// XEP-0060 7.1.5: each publish-option must match the node's value,
    /// else `<conflict/>` with `<precondition-not-met/>`.
    pub fn check_preconditions(&self, form: &Submitted) -> Result<(), PubSubError> {
        let mut wanted = self.clone();
        wanted.apply(form).map_err(|_| precondition_not_met())?;
        if wanted == *self {
            Ok(())
        } else {
            Err(precondition_not_met())
        }
    }

    /// The configuration form (`type` "form" for the owner, "result" in disco).
    pub fn to_form(&self, kind: &str) -> Element {
        let mut form = FormBuilder::new(kind, NODE_CONFIG);
        form.field(
            "pubsub#title",
            "text-single",
            Some("A friendly name for the node"),
            &[&self.title],
        );
        form.list(
            "pubsub#access_model",
            "Who may subscribe and retrieve items",
            self.access_model.name(),
            &AccessModel::names(),
        );
        form.list(
            "pubsub#publish_model",
            "Who may publish items",
            self.publish_model.name(),
            &PublishModel::names(),
        );
        let max_items = if self.max_items == MAX_ITEMS_LIMIT {
            "max".to_owned()
        } else {
            self.max_items.to_string()
        };
        form.field(
            "pubsub#max_items",
            "text-single",
            Some("Max number of items to persist"),
            &[&max_items],
        );
        form.boolean(
            "pubsub#persist_items",
            "Persist items to storage",
            self.persist_items,
        );
        form.boolean(
            "pubsub#deliver_notifications",
            "Deliver event notifications",
            self.deliver_notifications,
        );
        form.boolean(
            "pubsub#deliver_payloads",
            "Deliver payloads with event notifications",
            self.deliver_payloads,
        );
        form.boolean(
            "pubsub#notify_config",
            "Notify subscribers when the node configuration changes",
            self.notify_config,
        );
        form.boolean(
            "pubsub#notify_delete",
            "Notify subscribers when the node is deleted",
            self.notify_delete,
        );
        form.boolean(
            "pubsub#notify_retract",
            "Notify subscribers when items are removed from the node",
            self.notify_retract,
        );
        form.list(
            "pubsub#send_last_published_item",
            "When to send the last published item",
            self.send_last_published_item.name(),
            &SendLast::names(),
        );
        form.list(
            "pubsub#notification_type",
            "Message type of event notifications",
            self.notification_type.name(),
            &NotificationType::names(),
        );
        form.build()
    }
}

fn precondition_not_met() -> PubSubError {
    PubSubError::with(Condition::Conflict, "precondition-not-met")
        .with_text("Publish options do not match the node's configuration")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn submit(fields: &[(&str, &str)]) -> Submitted {
        let mut form = Submitted {
            form_type: Some(NODE_CONFIG.to_owned()),
            ..Submitted::default()
        };
        for (var, value) in fields {
            form.fields
                .insert((*var).to_owned(), vec![(*value).to_owned()]);
        }
        form
    }

    #[test]
    fn applies_fields_and_round_trips_through_the_form() {
        let mut config = NodeConfig::default();
        config
            .apply(&submit(&[
                ("pubsub#access_model", "whitelist"),
                ("pubsub#max_items", "max"),
                ("pubsub#notify_retract", "false"),
                ("pubsub#title", "News"),
            ]))
            .unwrap();
        assert_eq!(config.access_model, AccessModel::Whitelist);
        assert_eq!(config.max_items, MAX_ITEMS_LIMIT);
        assert!(!config.notify_retract);
        let mut again = NodeConfig::default();
        again
            .apply(&Submitted::parse(&config.to_form("submit")))
            .unwrap();
        assert_eq!(again, config);
        assert_eq!(NodeConfig::from_json(&config.to_json()), Some(config));
    }

    #[test]
    fn a_bad_field_changes_nothing() {
        let mut config = NodeConfig::default();
        let error = config
            .apply(&submit(&[
                ("pubsub#title", "x"),
                ("pubsub#access_model", "authorize"),
            ]))
            .unwrap_err();
        assert_eq!(error.condition, Condition::NotAcceptable);
        assert_eq!(config, NodeConfig::default());
        let error = config.apply(&submit(&[("pubsub#bogus", "1")])).unwrap_err();
        assert_eq!(error.condition, Condition::NotAcceptable);
    }

    #[test]
    fn preconditions_compare_with_the_node() {
        let config = NodeConfig::default();
        config
            .check_preconditions(&submit(&[("pubsub#access_model", "open")]))
            .unwrap();
        let error = config
            .check_preconditions(&submit(&[("pubsub#access_model", "whitelist")]))
            .unwrap_err();
        assert_eq!(error.condition, Condition::Conflict);
        assert_eq!(error.pubsub, Some("precondition-not-met"));
    }

    #[test]
    fn stored_json_missing_fields_take_defaults() {
        let config = NodeConfig::from_json("{\"max_items\":3}").unwrap();
        assert_eq!(config.max_items, 3);
        assert!(config.persist_items);
        assert_eq!(config.stored_items(), Some(3));
    }
}
