//! RFC 6120 section 8: the three stanza kinds, their addresses and types.
//!
//! A [`Stanza`] is an element whose addressing has been checked and parsed
//! once, at the edge; inner code reads `to`, `from` and the type from here
//! instead of re-parsing attributes.

pub mod error;

use starling_core::cluster::StanzaKind;
use starling_core::jid::{FullJid, Jid};
use starling_core::xml::{Element, ns};

pub use self::error::{Condition, ErrorType, StanzaError, error_reply};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    Normal,
    Chat,
    Groupchat,
    Headline,
    Error,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresenceType {
    Available,
    Unavailable,
    Subscribe,
    Subscribed,
    Unsubscribe,
    Unsubscribed,
    Probe,
    Error,
}

impl PresenceType {
    pub fn is_subscription(self) -> bool {
        matches!(
            self,
            PresenceType::Subscribe
                | PresenceType::Subscribed
                | PresenceType::Unsubscribe
                | PresenceType::Unsubscribed
        )
    }

    pub fn as_str(self) -> Option<&'static str> {
        Some(match self {
            PresenceType::Available => return None,
            PresenceType::Unavailable => "unavailable",
            PresenceType::Subscribe => "subscribe",
            PresenceType::Subscribed => "subscribed",
            PresenceType::Unsubscribe => "unsubscribe",
            PresenceType::Unsubscribed => "unsubscribed",
            PresenceType::Probe => "probe",
            PresenceType::Error => "error",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IqType {
    Get,
    Set,
    Result,
    Error,
}

/// The type attribute of a stanza, parsed for its kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StanzaType {
    Message(MessageType),
    Presence(PresenceType),
    Iq(IqType),
}

/// Why an element is not an acceptable stanza; answered with a stanza error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StanzaParseError {
    #[error("<{0}/> is not a stanza")]
    NotAStanza(String),
    #[error("'{attr}' is not a valid JID: {value:?}")]
    JidMalformed { attr: &'static str, value: String },
    #[error("unknown {kind} type {value:?}")]
    BadType { kind: &'static str, value: String },
    #[error("an iq needs an id")]
    IqWithoutId,
    #[error("an iq of type {0} must have exactly one child element")]
    IqPayload(&'static str),
}

impl StanzaParseError {
    pub fn to_stanza_error(&self) -> StanzaError {
        let condition = match self {
            StanzaParseError::JidMalformed { .. } => Condition::JidMalformed,
            _ => Condition::BadRequest,
        };
        StanzaError::new(condition).with_text(self.to_string())
    }
}

/// A message, presence or iq with its addressing parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct Stanza {
    pub element: Element,
    pub kind: StanzaKind,
    pub ty: StanzaType,
    pub to: Option<Jid>,
    pub from: Option<Jid>,
    /// Times it crossed between cluster members so far: 0 for a stanza
    /// from a client or made here, the envelope's count for one from a
    /// member. Routing passes it on, so stale directories cannot make a
    /// stanza circle (see `router::cluster::MAX_HOPS`).
    pub hops: u8,
    /// For a stanza a stream-managed client sent to another server: its
    /// place in the client's `h`, resolved when the stanza is dropped
    /// (confirmed by that server, bounced, or consumed here); see
    /// `sm::confirm`. Empty for every other stanza, and in a clone.
    pub confirm: crate::sm::Confirm,
}

impl Stanza {
    /// Checks an element read from a stream (namespace `jabber:client`).
    pub fn parse(element: Element) -> Result<Stanza, (Element, StanzaParseError)> {
        match Self::parse_header(&element) {
            Ok((kind, ty, to, from)) => Ok(Stanza {
                element,
                kind,
                ty,
                to,
                from,
                hops: 0,
                confirm: crate::sm::Confirm::default(),
            }),
            Err(error) => Err((element, error)),
        }
    }

    fn parse_header(
        element: &Element,
    ) -> Result<(StanzaKind, StanzaType, Option<Jid>, Option<Jid>), StanzaParseError> {
        if element.ns() != ns::CLIENT && element.ns() != ns::SERVER {
            return Err(StanzaParseError::NotAStanza(element.name().to_owned()));
        }
        let type_attr = element.attr("type");
        let (kind, ty) = match element.name() {
            "message" => (
                StanzaKind::Message,
                StanzaType::Message(message_type(type_attr)),
            ),
            "presence" => (
                StanzaKind::Presence,
                StanzaType::Presence(presence_type(type_attr)?),
            ),
            "iq" => {
                let ty = iq_type(type_attr)?;
                if element.attr("id").is_none() {
                    return Err(StanzaParseError::IqWithoutId);
                }
                let children = element.children().count();
                match ty {
                    IqType::Get | IqType::Set if children != 1 => {
                        return Err(StanzaParseError::IqPayload(if ty == IqType::Get {
                            "get"
                        } else {
                            "set"
                        }));
                    }
                    IqType::Result if children > 1 => {
                        return Err(StanzaParseError::IqPayload("result"));
                    }
                    _ => {}
                }
                (StanzaKind::Iq, StanzaType::Iq(ty))
            }
            other => return Err(StanzaParseError::NotAStanza(other.to_owned())),
        };
        let to = parse_jid_attr(element, "to")?;
        let from = parse_jid_attr(element, "from")?;
        Ok((kind, ty, to, from))
    }

    /// Builds a stanza from an element the server made itself.
    pub fn from_server(element: Element) -> Result<Stanza, StanzaParseError> {
        Stanza::parse(element).map_err(|(_, error)| error)
    }

    pub fn id(&self) -> Option<&str> {
        self.element.attr("id")
    }

    pub fn message_type(&self) -> Option<MessageType> {
        match self.ty {
            StanzaType::Message(ty) => Some(ty),
            _ => None,
        }
    }

    pub fn presence_type(&self) -> Option<PresenceType> {
        match self.ty {
            StanzaType::Presence(ty) => Some(ty),
            _ => None,
        }
    }

    pub fn iq_type(&self) -> Option<IqType> {
        match self.ty {
            StanzaType::Iq(ty) => Some(ty),
            _ => None,
        }
    }

    /// True for stanzas of type error, which are never answered with an error.
    pub fn is_error(&self) -> bool {
        matches!(
            self.ty,
            StanzaType::Message(MessageType::Error)
                | StanzaType::Presence(PresenceType::Error)
                | StanzaType::Iq(IqType::Error)
        )
    }

    /// The first child element of an iq (its payload).
    pub fn payload(&self) -> Option<&Element> {
        self.element.children().next()
    }

    pub fn set_from(&mut self, from: Jid) {
        self.element.set_attr("from", from.as_str());
        self.from = Some(from);
    }

    pub fn set_to(&mut self, to: Jid) {
        self.element.set_attr("to", to.as_str());
        self.to = Some(to);
    }

    /// Stamps the sender's full JID (RFC 6120 8.1.2.1): clients cannot spoof it.
    pub fn stamp_from(&mut self, session: &FullJid) {
        self.set_from(Jid::from(session.clone()));
    }

    /// The error reply to this stanza, or `None` for an error stanza (which
    /// must never be answered with another error, RFC 6120 8.3.1).
    pub fn error_reply(&self, error: &StanzaError) -> Option<Element> {
        (!self.is_error()).then(|| error_reply(&self.element, error))
    }

    /// An empty iq result to this iq.
    pub fn iq_result(&self) -> Element {
        let mut result = Element::new("iq", ns::CLIENT);
        if let Some(id) = self.id() {
            result.set_attr("id", id);
        }
        if let Some(from) = &self.from {
            result.set_attr("to", from.as_str());
        }
        if let Some(to) = &self.to {
            result.set_attr("from", to.as_str());
        }
        result.set_attr("type", "result");
        result
    }
}

fn parse_jid_attr(element: &Element, attr: &'static str) -> Result<Option<Jid>, StanzaParseError> {
    match element.attr(attr) {
        None => Ok(None),
        Some(value) => Jid::new(value)
            .map(Some)
            .map_err(|_| StanzaParseError::JidMalformed {
                attr,
                value: value.to_owned(),
            }),
    }
}

/// RFC 6121 5.2.2: an absent or unknown message type is treated as `normal`.
fn message_type(value: Option<&str>) -> MessageType {
    match value {
        Some("chat") => MessageType::Chat,
        Some("groupchat") => MessageType::Groupchat,
        Some("headline") => MessageType::Headline,
        Some("error") => MessageType::Error,
        _ => MessageType::Normal,
    }
}

fn presence_type(value: Option<&str>) -> Result<PresenceType, StanzaParseError> {
    Ok(match value {
        None => PresenceType::Available,
        Some("unavailable") => PresenceType::Unavailable,
        Some("subscribe") => PresenceType::Subscribe,
        Some("subscribed") => PresenceType::Subscribed,
        Some("unsubscribe") => PresenceType::Unsubscribe,
        Some("unsubscribed") => PresenceType::Unsubscribed,
        Some("probe") => PresenceType::Probe,
        Some("error") => PresenceType::Error,
        Some(other) => {
            return Err(StanzaParseError::BadType {
                kind: "presence",
                value: other.to_owned(),
            });
        }
    })
}

fn iq_type(value: Option<&str>) -> Result<IqType, StanzaParseError> {
    match value {
        Some("get") => Ok(IqType::Get),
        Some("set") => Ok(IqType::Set),
        Some("result") => Ok(IqType::Result),
        Some("error") => Ok(IqType::Error),
        other => Err(StanzaParseError::BadType {
            kind: "iq",
            value: other.unwrap_or("").to_owned(),
        }),
    }
}

/// Builds an iq element (for server-originated requests such as roster pushes).
pub fn iq(ty: &str, id: &str, from: Option<&str>, to: &str, payload: Element) -> Element {
    let mut iq = Element::new("iq", ns::CLIENT)
        .with_attr("type", ty)
        .with_attr("id", id);
    if let Some(from) = from {
        iq.set_attr("from", from);
    }
    iq.set_attr("to", to);
    iq.push_child(payload);
    iq
}

#[cfg(test)]
mod tests {
    use super::*;

    fn element(name: &str, attrs: &[(&'static str, &str)]) -> Element {
        let mut element = Element::new(name.to_owned(), ns::CLIENT);
        for (key, value) in attrs {
            element.set_attr(*key, *value);
        }
        element
    }

    #[test]
    fn parses_addresses_and_types() {
        let stanza = Stanza::parse(element(
            "message",
            &[("to", "Bob@Example.com/phone"), ("type", "chat")],
        ))
        .unwrap();
        assert_eq!(stanza.kind, StanzaKind::Message);
        assert_eq!(stanza.message_type(), Some(MessageType::Chat));
        assert_eq!(stanza.to.unwrap().as_str(), "bob@example.com/phone");
    }

    #[test]
    fn rejects_bad_jids_and_types() {
        let (_, error) = Stanza::parse(element("message", &[("to", "a@b@c")])).unwrap_err();
        assert_eq!(error.to_stanza_error().condition, Condition::JidMalformed);
        let (_, error) = Stanza::parse(element("presence", &[("type", "online")])).unwrap_err();
        assert_eq!(error.to_stanza_error().condition, Condition::BadRequest);
        let (_, error) = Stanza::parse(element("iq", &[("type", "get"), ("id", "1")])).unwrap_err();
        assert_eq!(error, StanzaParseError::IqPayload("get"));
        let (_, error) = Stanza::parse(element("iq", &[("type", "result")])).unwrap_err();
        assert_eq!(error, StanzaParseError::IqWithoutId);
    }

    #[test]
    fn unknown_message_type_is_normal() {
        let stanza = Stanza::parse(element("message", &[("type", "shout")])).unwrap();
        assert_eq!(stanza.message_type(), Some(MessageType::Normal));
    }

    #[test]
    fn errors_are_never_answered_with_errors() {
        let stanza = Stanza::parse(element("message", &[("type", "error")])).unwrap();
        assert!(
            stanza
                .error_reply(&Condition::ServiceUnavailable.into())
                .is_none()
        );
    }
}
