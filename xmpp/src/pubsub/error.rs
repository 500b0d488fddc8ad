//! XEP-0060's error cases: a stanza error condition plus, where the XEP names
//! one, an application condition in the `pubsub#errors` namespace (and the
//! feature for `<unsupported/>`). Built once here, turned into a stanza error
//! for XMPP and read as strings by the CometD side.

use starling_core::xml::{Element, ns};

use crate::stanza::{Condition, ErrorType, StanzaError};
use crate::storage::StorageError;

/// Why a pub/sub request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PubSubError {
    pub condition: Condition,
    /// The `pubsub#errors` child, e.g. `"nodeid-required"`.
    pub pubsub: Option<&'static str>,
    /// The `feature` attribute of an `<unsupported/>` condition.
    pub feature: Option<&'static str>,
    pub text: Option<String>,
}

/// The error type XEP-0060's examples give a condition, where it differs
/// from RFC 6120's usual one.
fn xep_type(condition: Condition) -> ErrorType {
    match condition {
        // XEP-0060 6.2.3.2, 6.3.4.2: not subscribed.
        Condition::UnexpectedRequest => ErrorType::Cancel,
        other => other.default_type(),
    }
}

impl PubSubError {
    pub fn new(condition: Condition) -> PubSubError {
        PubSubError {
            condition,
            pubsub: None,
            feature: None,
            text: None,
        }
    }

    /// A condition with its `pubsub#errors` companion.
    pub fn with(condition: Condition, pubsub: &'static str) -> PubSubError {
        PubSubError {
            pubsub: Some(pubsub),
            ..PubSubError::new(condition)
        }
    }

    /// `<feature-not-implemented/>` with `<unsupported feature='..'/>`.
    pub fn unsupported(feature: &'static str) -> PubSubError {
        PubSubError {
            feature: Some(feature),
            ..PubSubError::with(Condition::FeatureNotImplemented, "unsupported")
        }
    }

    pub fn with_text(mut self, text: impl Into<String>) -> PubSubError {
        self.text = Some(text.into());
        self
    }

    pub fn item_not_found() -> PubSubError {
        PubSubError::new(Condition::ItemNotFound).with_text("No such node")
    }

    pub fn forbidden() -> PubSubError {
        PubSubError::new(Condition::Forbidden)
    }

    pub fn bad_request(pubsub: &'static str) -> PubSubError {
        PubSubError::with(Condition::BadRequest, pubsub)
    }

    /// A store failure: the request failed, the service did not.
    pub fn storage(error: &StorageError) -> PubSubError {
        tracing::error!(%error, "pub/sub storage failed");
        PubSubError::new(Condition::InternalServerError).with_text("Storage failed")
    }

    /// The stanza error condition, e.g. `"forbidden"`.
    pub fn condition(&self) -> &str {
        self.condition.name()
    }

    /// The `pubsub#errors` condition, if any.
    pub fn pubsub_condition(&self) -> Option<&str> {
        self.pubsub
    }

    /// A one-line description for logs and non-XMPP callers.
    pub fn text(&self) -> String {
        let mut out = self.condition.name().to_owned();
        if let Some(pubsub) = self.pubsub {
            out.push('/');
            out.push_str(pubsub);
        }
        if let Some(feature) = self.feature {
            out.push_str(&format!(" ({feature})"));
        }
        if let Some(text) = &self.text {
            out.push_str(": ");
            out.push_str(text);
        }
        out
    }

    pub fn to_stanza_error(&self) -> StanzaError {
        let mut error = StanzaError::new(self.condition).with_type(xep_type(self.condition));
        if let Some(text) = &self.text {
            error = error.with_text(text.clone());
        }
        if let Some(pubsub) = self.pubsub {
            let mut extra = Element::new(pubsub, ns::PUBSUB_ERRORS);
            if let Some(feature) = self.feature {
                extra.set_attr("feature", feature);
            }
            error = error.with_extra(extra);
        }
        error
    }
}

impl std::fmt::Display for PubSubError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text())
    }
}

impl std::error::Error for PubSubError {}

impl From<StorageError> for PubSubError {
    fn from(error: StorageError) -> PubSubError {
        PubSubError::storage(&error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_to_stanza_error_with_application_condition() {
        let error = PubSubError::unsupported("retract-items").to_stanza_error();
        assert_eq!(error.condition, Condition::FeatureNotImplemented);
        let xml = error.to_element().to_standalone_string();
        assert!(
            xml.contains(
                "<unsupported xmlns=\"http://jabber.org/protocol/pubsub#errors\" \
                 feature=\"retract-items\"/>"
            ),
            "{xml}"
        );
        assert!(xml.contains("type=\"cancel\""), "{xml}");
    }

    #[test]
    fn plain_conditions_have_no_extra() {
        let error = PubSubError::forbidden();
        assert_eq!(error.condition(), "forbidden");
        assert!(error.to_stanza_error().extra.is_none());
        let error = PubSubError::bad_request("nodeid-required");
        assert_eq!(error.text(), "bad-request/nodeid-required");
        assert_eq!(error.to_stanza_error().kind.as_str(), "modify");
        let error = PubSubError::with(Condition::UnexpectedRequest, "not-subscribed");
        assert_eq!(error.to_stanza_error().kind.as_str(), "cancel");
    }
}
