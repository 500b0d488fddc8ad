//! Mediated invitations and voice requests (XEP-0045 7.8, 7.13, 8.6).

use starling_core::jid::{FullJid, Jid};
use starling_core::xml::{Element, ns};

use super::super::affiliation::{Affiliation, Role};
use super::super::{MUC_ADMIN, MUC_USER};
use super::{Out, Room, bad_request};
use crate::pubsub::form::Submitted;
use crate::stanza::{Condition, StanzaError};

impl Room {
    /// Mediated invitations and declines (XEP-0045 7.8.2, 7.8.3). A
    /// members-only room makes the invitee a member when the inviter may
    /// invite. Returns whether affiliations changed.
    pub fn invite(&mut self, from: &FullJid, x: &Element) -> Result<(Vec<Out>, bool), StanzaError> {
        let mut out = Vec::new();
        let mut changed = false;
        if let Some(decline) = x.child("decline", MUC_USER) {
            let to = decline
                .attr("to")
                .and_then(|to| Jid::new(to).ok())
                .ok_or_else(|| bad_request("A decline needs a 'to'"))?;
            let mut forwarded = Element::new("decline", MUC_USER).with_attr("from", from.as_str());
            if let Some(reason) = decline.child("reason", MUC_USER) {
                forwarded.push_child(reason.clone());
            }
            out.push(self.invitation_message(&to, forwarded, false));
            return Ok((out, false));
        }
        let sender = self.occupant(from).ok_or_else(|| {
            StanzaError::new(Condition::NotAcceptable).with_text("Only occupants may invite")
        })?;
        let affiliation = self.affiliation(&from.to_bare());
        if self.config.members_only
            && !self.config.allow_invites
            && affiliation < Affiliation::Admin
        {
            return Err(StanzaError::new(Condition::Forbidden)
                .with_text("Only admins may invite to this room"));
        }
        let _ = sender;
        for invite in x.children().filter(|c| c.is("invite", MUC_USER)) {
            let to = invite
                .attr("to")
                .and_then(|to| Jid::new(to).ok())
                .ok_or_else(|| bad_request("An invitation needs a 'to'"))?;
            if self.config.members_only && self.affiliation(&to.to_bare()) == Affiliation::None {
                self.affiliations.insert(to.to_bare(), Affiliation::Member);
                changed = true;
            }
            let mut forwarded = Element::new("invite", MUC_USER).with_attr("from", from.as_str());
            if let Some(reason) = invite.child("reason", MUC_USER) {
                forwarded.push_child(reason.clone());
            }
            out.push(self.invitation_message(&to, forwarded, true));
        }
        if out.is_empty() {
            return Err(bad_request("Nothing to invite"));
        }
        Ok((out, changed))
    }

    pub(super) fn invitation_message(&self, to: &Jid, child: Element, with_password: bool) -> Out {
        let mut x = Element::new("x", MUC_USER).with_child(child);
        if with_password && !self.config.password.is_empty() {
            x.push_child(
                Element::new("password", MUC_USER).with_text(self.config.password.clone()),
            );
        }
        Out {
            to: to.clone(),
            stanza: Element::new("message", ns::CLIENT)
                .with_attr("from", self.jid.as_str())
                .with_attr("to", to.as_str())
                .with_child(x),
            about: None,
        }
    }

    /// XEP-0045 7.13 and 8.6: a visitor asks for voice (moderators get a
    /// form), or a moderator answers such a form (voice granted when it
    /// says so).
    pub fn voice_request(&mut self, from: &FullJid, x: &Element) -> Result<Vec<Out>, StanzaError> {
        let form = Submitted::parse(x);
        if form.form_type.as_deref() != Some(VOICE_REQUEST) {
            return Err(bad_request("Messages to the room are of type groupchat"));
        }
        let sender = self.occupant(from).ok_or_else(|| {
            StanzaError::new(Condition::NotAcceptable).with_text("Only occupants ask for voice")
        })?;
        if let Some(allow) = form.value("muc#request_allow") {
            let nick = form
                .value("muc#roomnick")
                .ok_or_else(|| bad_request("The answer names no muc#roomnick"))?
                .to_owned();
            if !matches!(allow, "1" | "true") {
                return Ok(Vec::new());
            }
            let query = Element::new("query", MUC_ADMIN).with_child(
                Element::new("item", MUC_ADMIN)
                    .with_attr("nick", nick)
                    .with_attr("role", "participant"),
            );
            return self.admin_set(from, &query).map(|(outs, _)| outs);
        }
        if sender.role != Role::Visitor {
            return Err(
                StanzaError::new(Condition::NotAcceptable).with_text("You have voice already")
            );
        }
        let mut form = crate::pubsub::form::FormBuilder::new("form", VOICE_REQUEST);
        form.field(
            "muc#role",
            "list-single",
            Some("Requested role"),
            &["participant"],
        );
        form.field(
            "muc#jid",
            "jid-single",
            Some("User ID"),
            &[sender.jid.as_str()],
        );
        form.field(
            "muc#roomnick",
            "text-single",
            Some("Room nickname"),
            &[&sender.nick],
        );
        form.boolean("muc#request_allow", "Grant voice to this person?", false);
        let form = form.build();
        Ok(self
            .occupants
            .iter()
            .filter(|o| o.role == Role::Moderator)
            .map(|moderator| Out {
                to: moderator.jid.clone().into(),
                stanza: Element::new("message", ns::CLIENT)
                    .with_attr("from", self.jid.as_str())
                    .with_attr("to", moderator.jid.as_str())
                    .with_child(form.clone()),
                about: None,
            })
            .collect())
    }
}

/// XEP-0045 7.13: the form of a voice request.
const VOICE_REQUEST: &str = "http://jabber.org/protocol/muc#request";
