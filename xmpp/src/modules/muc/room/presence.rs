//! Entering, presence changes, leaving, and occupants lost or brought
//! back with a member (XEP-0045 7.2-7.7, 7.14).

use std::collections::HashSet;

use starling_core::jid::{FullJid, Jid};
use starling_core::xml::{Element, ns};

use super::super::MUC;
use super::super::affiliation::{self, Affiliation, Role};
use super::super::config_form::Whois;
use super::super::history::HistoryRequest;
use super::bucket::Bucket;
use super::render::{Shown, presence_children};
use super::{Limits, Occupant, Out, Room};
use crate::stanza::{Condition, ErrorType, StanzaError};
use crate::util::time::xep0082;

impl Room {
    /// XEP-0045 7.2: enters `from` as `nick`. `created` adds status 201.
    pub fn join(
        &mut self,
        from: &FullJid,
        nick: &str,
        presence: &Element,
        created: bool,
        limits: &Limits,
        now_ms: i64,
    ) -> Result<Vec<Out>, StanzaError> {
        let user = from.to_bare();
        let affiliation = self.affiliation(&user);
        let muc = presence.child("x", MUC);
        if self.locked && affiliation != Affiliation::Owner {
            return Err(StanzaError::new(Condition::ItemNotFound)
                .with_text("The room is being created and is not open yet"));
        }
        if affiliation == Affiliation::Outcast {
            return Err(StanzaError::new(Condition::Forbidden).with_text("You are banned"));
        }
        if self.config.members_only && affiliation < Affiliation::Member {
            return Err(StanzaError::new(Condition::RegistrationRequired)
                .with_text("The room is for members only"));
        }
        if self.index_of_nick(nick).is_some() {
            return Err(StanzaError::new(Condition::Conflict)
                .with_text("That nickname is in use in the room"));
        }
        if self.reserved_by_other(nick, &user) {
            return Err(reserved());
        }
        if !self.config.password.is_empty() && affiliation < Affiliation::Admin {
            let given = muc.and_then(|x| x.child("password", MUC)).map(|p| p.text());
            if given.as_deref() != Some(self.config.password.as_str()) {
                return Err(StanzaError::new(Condition::NotAuthorized)
                    .with_text("The room needs a password"));
            }
        }
        let max = match self.config.max_users {
            0 => limits.max_occupants,
            room => room.min(limits.max_occupants),
        };
        if self.occupants.len() >= max as usize && affiliation < Affiliation::Admin {
            return Err(StanzaError::new(Condition::ServiceUnavailable)
                .with_type(ErrorType::Wait)
                .with_text("The room is full"));
        }
        let occupant = Occupant {
            nick: nick.to_owned(),
            jid: from.clone(),
            role: affiliation::default_role(affiliation, self.config.moderated),
            presence: presence_children(presence),
            id: self.occupant_id(&user),
            bucket: Bucket::full(limits, now_ms),
        };
        let mut out = Vec::new();
        // The newcomer first hears who is there (XEP-0045 7.2.3).
        for other in &self.occupants {
            let shown = Shown::new(other, self.affiliation(&other.jid.to_bare()));
            out.push(Out {
                to: from.clone().into(),
                stanza: self.render(&shown, &occupant),
                about: Some(other.jid.clone()),
            });
        }
        self.occupants.push(occupant);
        let occupant = self.occupants.last().expect("just pushed").clone();
        let mut self_codes = Vec::new();
        if self.config.whois == Whois::Anyone {
            self_codes.push(100);
        }
        if self.config.logging {
            self_codes.push(170);
        }
        if created {
            self_codes.push(201);
        }
        self.broadcast(&Shown::new(&occupant, affiliation), &self_codes, &mut out);
        let request = HistoryRequest::parse(muc.and_then(|x| x.child("history", MUC)));
        for entry in self.history.select(&request, now_ms) {
            let mut stanza = entry.stanza.clone();
            stanza.set_attr("to", from.as_str());
            stanza.push_child(
                Element::new("delay", ns::DELAY)
                    .with_attr("from", self.jid.as_str())
                    .with_attr("stamp", xep0082(entry.stamp_ms)),
            );
            out.push(Out {
                to: from.clone().into(),
                stanza,
                about: None,
            });
        }
        out.push(Out {
            to: from.clone().into(),
            stanza: self.subject_message(from),
            about: None,
        });
        Ok(out)
    }

    pub(super) fn subject_message(&self, to: &FullJid) -> Element {
        let (text, by) = &self.subject;
        let from = if by.is_empty() {
            Jid::from(self.jid.clone())
        } else {
            self.nick_jid(by)
        };
        let mut subject = Element::new("subject", ns::CLIENT);
        if !text.is_empty() {
            subject.push_text(text.clone());
        }
        Element::new("message", ns::CLIENT)
            .with_attr("from", from.as_str())
            .with_attr("to", to.as_str())
            .with_attr("type", "groupchat")
            .with_child(subject)
    }

    /// An available presence from an occupant: a change of status, or of
    /// nick when `nick` differs (XEP-0045 7.6, 7.7).
    pub fn presence(
        &mut self,
        from: &FullJid,
        nick: &str,
        presence: &Element,
    ) -> Result<Vec<Out>, StanzaError> {
        let index = self.index_of(from).ok_or(Condition::NotAcceptable)?;
        let mut out = Vec::new();
        if self.occupants[index].nick != nick {
            if self.index_of_nick(nick).is_some() {
                return Err(StanzaError::new(Condition::Conflict)
                    .with_text("That nickname is in use in the room"));
            }
            if self.reserved_by_other(nick, &from.to_bare()) {
                return Err(reserved());
            }
            let before = self.occupants[index].clone();
            let affiliation = self.affiliation(&from.to_bare());
            let mut shown = Shown::new(&before, affiliation);
            shown.unavailable = true;
            shown.codes.push(303);
            shown.new_nick = Some(nick);
            self.broadcast(&shown, &[], &mut out);
            self.occupants[index].nick = nick.to_owned();
        }
        self.occupants[index].presence = presence_children(presence);
        let occupant = self.occupants[index].clone();
        let affiliation = self.affiliation(&from.to_bare());
        self.broadcast(&Shown::new(&occupant, affiliation), &[], &mut out);
        Ok(out)
    }

    /// An unavailable presence from an occupant (XEP-0045 7.14).
    pub fn leave(&mut self, from: &FullJid, presence: &Element) -> Vec<Out> {
        let Some(index) = self.index_of(from) else {
            return Vec::new();
        };
        self.occupants[index].presence = presence_children(presence);
        let leaver = self.occupants.remove(index);
        let mut out = Vec::new();
        let shown = Shown::new(&leaver, self.affiliation(&from.to_bare())).gone(&[]);
        self.tell_leaver(&shown, &[], &mut out);
        self.broadcast(&shown, &[], &mut out);
        out
    }

    /// Occupants whose sessions were lost with a member leave with status
    /// 333 (XEP-0045 7.14: a technical reason).
    pub fn remove_lost(&mut self, lost: &HashSet<FullJid>) -> Vec<Out> {
        let mut out = Vec::new();
        while let Some(index) = self.occupants.iter().position(|o| lost.contains(&o.jid)) {
            let leaver = self.occupants.remove(index);
            let shown = Shown::new(&leaver, self.affiliation(&leaver.jid.to_bare())).gone(&[333]);
            self.broadcast(&shown, &[], &mut out);
        }
        out
    }

    /// An occupant the room had on a member that died, brought back by
    /// the member holding the session: added silently (no presence).
    pub fn rejoin(
        &mut self,
        jid: FullJid,
        nick: &str,
        role: Role,
        affiliation: Affiliation,
        limits: &Limits,
        now_ms: i64,
    ) {
        if self.index_of(&jid).is_some() || self.index_of_nick(nick).is_some() {
            return;
        }
        let user = jid.to_bare();
        self.affiliations.entry(user.clone()).or_insert(affiliation);
        let id = self.occupant_id(&user);
        self.occupants.push(Occupant {
            nick: nick.to_owned(),
            jid,
            role,
            presence: Vec::new(),
            id,
            bucket: Bucket::full(limits, now_ms),
        });
    }
}

/// XEP-0045 7.2.9: a nick another account registered with the room.
fn reserved() -> StanzaError {
    StanzaError::new(Condition::Conflict).with_text("That nickname is reserved by another user")
}
