//! RFC 6120 section 8.3: stanza errors and the error replies built from them.

use starling_core::xml::{Element, ns};

/// The `type` attribute of an `<error/>`: what the sender should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    Auth,
    Cancel,
    Continue,
    Modify,
    Wait,
}

impl ErrorType {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::Auth => "auth",
            ErrorType::Cancel => "cancel",
            ErrorType::Continue => "continue",
            ErrorType::Modify => "modify",
            ErrorType::Wait => "wait",
        }
    }
}

/// A defined condition (RFC 6120 8.3.3) with its usual error type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    BadRequest,
    Conflict,
    FeatureNotImplemented,
    Forbidden,
    InternalServerError,
    ItemNotFound,
    JidMalformed,
    NotAcceptable,
    NotAllowed,
    NotAuthorized,
    PolicyViolation,
    RecipientUnavailable,
    RegistrationRequired,
    RemoteServerNotFound,
    RemoteServerTimeout,
    ResourceConstraint,
    ServiceUnavailable,
    UndefinedCondition,
    UnexpectedRequest,
}

impl Condition {
    pub fn name(self) -> &'static str {
        match self {
            Condition::BadRequest => "bad-request",
            Condition::Conflict => "conflict",
            Condition::FeatureNotImplemented => "feature-not-implemented",
            Condition::Forbidden => "forbidden",
            Condition::InternalServerError => "internal-server-error",
            Condition::ItemNotFound => "item-not-found",
            Condition::JidMalformed => "jid-malformed",
            Condition::NotAcceptable => "not-acceptable",
            Condition::NotAllowed => "not-allowed",
            Condition::NotAuthorized => "not-authorized",
            Condition::PolicyViolation => "policy-violation",
            Condition::RecipientUnavailable => "recipient-unavailable",
            Condition::RegistrationRequired => "registration-required",
            Condition::RemoteServerNotFound => "remote-server-not-found",
            Condition::RemoteServerTimeout => "remote-server-timeout",
            Condition::ResourceConstraint => "resource-constraint",
            Condition::ServiceUnavailable => "service-unavailable",
            Condition::UndefinedCondition => "undefined-condition",
            Condition::UnexpectedRequest => "unexpected-request",
        }
    }

    /// The error type RFC 6120's examples pair with the condition.
    pub fn default_type(self) -> ErrorType {
        match self {
            Condition::BadRequest
            | Condition::JidMalformed
            | Condition::NotAcceptable
            | Condition::PolicyViolation => ErrorType::Modify,
            Condition::Forbidden | Condition::NotAuthorized | Condition::RegistrationRequired => {
                ErrorType::Auth
            }
            Condition::InternalServerError
            | Condition::RecipientUnavailable
            | Condition::RemoteServerTimeout
            | Condition::ResourceConstraint
            | Condition::UnexpectedRequest => ErrorType::Wait,
            Condition::Conflict
            | Condition::FeatureNotImplemented
            | Condition::ItemNotFound
            | Condition::NotAllowed
            | Condition::RemoteServerNotFound
            | Condition::ServiceUnavailable
            | Condition::UndefinedCondition => ErrorType::Cancel,
        }
    }
}

/// A stanza error to send back to whoever sent the failed stanza.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StanzaError {
    pub condition: Condition,
    pub kind: ErrorType,
    pub text: Option<String>,
    /// An application-specific condition (e.g. XEP-0060's `<unsupported/>`).
    pub extra: Option<Element>,
}

impl StanzaError {
    pub fn new(condition: Condition) -> Self {
        StanzaError {
            condition,
            kind: condition.default_type(),
            text: None,
            extra: None,
        }
    }

    pub fn with_text(mut self, text: impl Into<String>) -> Self {
        self.text = Some(text.into());
        self
    }

    pub fn with_type(mut self, kind: ErrorType) -> Self {
        self.kind = kind;
        self
    }

    pub fn with_extra(mut self, extra: Element) -> Self {
        self.extra = Some(extra);
        self
    }

    /// The `<error/>` child.
    pub fn to_element(&self) -> Element {
        let mut error = Element::new("error", ns::CLIENT).with_attr("type", self.kind.as_str());
        error.push_child(Element::new(self.condition.name(), ns::STANZAS));
        if let Some(text) = &self.text {
            error.push_child(
                Element::new("text", ns::STANZAS)
                    .with_attr("xml:lang", "en")
                    .with_text(text.clone()),
            );
        }
        if let Some(extra) = &self.extra {
            error.push_child(extra.clone());
        }
        error
    }
}

impl From<Condition> for StanzaError {
    fn from(condition: Condition) -> Self {
        StanzaError::new(condition)
    }
}

/// Builds the error reply to `original`: same name and id, addresses swapped,
/// `type='error'`, the original payload dropped (iq) or kept (message,
/// presence) as RFC 6120 8.3.1 allows, and the `<error/>` child appended.
pub fn error_reply(original: &Element, error: &StanzaError) -> Element {
    let mut reply = Element::new(original.name().to_owned(), original.ns().to_owned());
    if let Some(id) = original.attr("id") {
        reply.set_attr("id", id);
    }
    if let Some(from) = original.attr("from") {
        reply.set_attr("to", from);
    }
    if let Some(to) = original.attr("to") {
        reply.set_attr("from", to);
    }
    reply.set_attr("type", "error");
    if original.name() != "iq" {
        for child in original.children() {
            if child.name() != "error" {
                reply.push_child(child.clone());
            }
        }
    }
    reply.push_child(error.to_element());
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_reply_swaps_addresses_and_keeps_id() {
        let iq = Element::new("iq", ns::CLIENT)
            .with_attr("id", "q1")
            .with_attr("from", "a@example.com/r")
            .with_attr("to", "example.com")
            .with_attr("type", "get")
            .with_child(Element::new("query", "urn:example:unknown"));
        let reply = error_reply(&iq, &Condition::ServiceUnavailable.into());
        assert_eq!(
            String::from_utf8(reply.to_bytes()).unwrap(),
            "<iq id=\"q1\" to=\"a@example.com/r\" from=\"example.com\" type=\"error\">\
             <error type=\"cancel\"><service-unavailable \
             xmlns=\"urn:ietf:params:xml:ns:xmpp-stanzas\"/></error></iq>"
        );
    }

    #[test]
    fn message_errors_keep_the_body() {
        let message = Element::new("message", ns::CLIENT)
            .with_attr("to", "nobody@example.com")
            .with_child(Element::new("body", ns::CLIENT).with_text("hi"));
        let error = StanzaError::new(Condition::ServiceUnavailable).with_text("no such user");
        let reply = error_reply(&message, &error);
        assert!(reply.has_child("body", ns::CLIENT));
        let text = reply
            .child("error", ns::CLIENT)
            .unwrap()
            .child("text", ns::STANZAS)
            .unwrap();
        assert_eq!(text.text(), "no such user");
    }
}
