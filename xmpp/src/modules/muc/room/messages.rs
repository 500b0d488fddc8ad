//! Groupchat and private messages through the room (XEP-0045 7.4, 7.5),
//! with the subject (8.1).

use starling_core::jid::FullJid;
use starling_core::xml::{Element, ns};

use super::super::affiliation::Role;
use super::super::config_form::AllowPm;
use super::super::{MUC_USER, OCCUPANT_ID};
use super::{Limits, Out, Room};
use crate::stanza::{Condition, ErrorType, StanzaError};

impl Room {
    /// A groupchat message from an occupant: a subject change (7.2.15,
    /// 8.1) or a message to everyone (7.4). Returns whether the subject
    /// changed, for the module to store it.
    pub fn groupchat(
        &mut self,
        from: &FullJid,
        message: &Element,
        limits: &Limits,
        now_ms: i64,
    ) -> Result<(Vec<Out>, bool), StanzaError> {
        let index = self.index_of(from).ok_or_else(|| {
            StanzaError::new(Condition::NotAcceptable)
                .with_text("Only occupants may send messages to the room")
        })?;
        let role = self.occupants[index].role;
        if role < Role::Participant {
            return Err(StanzaError::new(Condition::Forbidden)
                .with_text("Visitors have no voice in this room"));
        }
        if !self.occupants[index].bucket.take(limits, now_ms) {
            return Err(StanzaError::new(Condition::PolicyViolation)
                .with_type(ErrorType::Wait)
                .with_text("You are sending messages too fast; wait and try again"));
        }
        let nick = self.occupants[index].nick.clone();
        let subject = message.child("subject", ns::CLIENT);
        let has_body = message.child("body", ns::CLIENT).is_some();
        if let Some(subject) = subject.filter(|_| !has_body) {
            if role != Role::Moderator && !self.config.change_subject {
                return Err(StanzaError::new(Condition::Forbidden)
                    .with_text("Only moderators may change the subject"));
            }
            let text = subject.text();
            if text.chars().count() > limits.max_subject_chars {
                return Err(
                    StanzaError::new(Condition::NotAcceptable).with_text(format!(
                        "The subject is longer than {} characters",
                        limits.max_subject_chars
                    )),
                );
            }
            self.subject = (text, nick);
            let out = self
                .occupants
                .iter()
                .map(|to| Out {
                    to: to.jid.clone().into(),
                    stanza: self.subject_message(&to.jid),
                    about: None,
                })
                .collect();
            return Ok((out, true));
        }
        let mut stanza = message.clone();
        stanza.remove_attr("to");
        stanza.set_attr("from", self.nick_jid(&nick).as_str());
        // XEP-0421 3: an occupant id only the room may set.
        stanza.remove_children("occupant-id", OCCUPANT_ID);
        stanza.push_child(
            Element::new("occupant-id", OCCUPANT_ID).with_attr("id", &self.occupants[index].id),
        );
        if has_body && self.config.logging {
            // XEP-0313 / XEP-0359: the room's archive id, set by the room only.
            stanza.remove_children("stanza-id", super::super::archive::SID);
            stanza.push_child(
                Element::new("stanza-id", super::super::archive::SID)
                    .with_attr("id", super::super::archive::new_id())
                    .with_attr("by", self.jid.as_str()),
            );
        }
        if has_body {
            self.history.push(stanza.clone(), now_ms);
        }
        let out = self
            .occupants
            .iter()
            .map(|to| {
                let mut copy = stanza.clone();
                copy.set_attr("to", to.jid.as_str());
                Out {
                    to: to.jid.clone().into(),
                    stanza: copy,
                    about: None,
                }
            })
            .collect();
        Ok((out, false))
    }

    /// A private message from an occupant to `nick` (XEP-0045 7.5).
    pub fn private_message(
        &self,
        from: &FullJid,
        nick: &str,
        message: &Element,
    ) -> Result<Vec<Out>, StanzaError> {
        let sender = self.occupant(from).ok_or_else(|| {
            StanzaError::new(Condition::NotAcceptable)
                .with_text("Only occupants may send private messages")
        })?;
        if message.attr("type") == Some("groupchat") {
            return Err(StanzaError::new(Condition::BadRequest)
                .with_text("A groupchat message goes to the room, not to an occupant"));
        }
        let allowed = match self.config.allow_pm {
            AllowPm::Anyone => true,
            AllowPm::Participants => sender.role >= Role::Participant,
            AllowPm::Moderators => sender.role == Role::Moderator,
            AllowPm::None => false,
        };
        if !allowed {
            return Err(StanzaError::new(Condition::NotAllowed)
                .with_text("Private messages are not allowed in this room"));
        }
        let target = &self.occupants[self.occupant_index(nick)?];
        let mut stanza = message.clone();
        stanza.set_attr("from", self.nick_jid(&sender.nick).as_str());
        stanza.set_attr("to", target.jid.as_str());
        stanza.remove_children("x", MUC_USER);
        stanza.push_child(Element::new("x", MUC_USER));
        stanza.remove_children("occupant-id", OCCUPANT_ID);
        stanza.push_child(Element::new("occupant-id", OCCUPANT_ID).with_attr("id", &sender.id));
        Ok(vec![Out {
            to: target.jid.clone().into(),
            stanza,
            about: None,
        }])
    }
}
