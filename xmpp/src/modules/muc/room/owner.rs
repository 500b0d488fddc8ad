//! The owner's side: the configuration form, destroying the room, and the
//! service shutting it (XEP-0045 10).

use starling_core::jid::FullJid;
use starling_core::xml::{Element, ns};

use super::super::MUC_USER;
use super::super::affiliation::Affiliation;
use super::super::config_form::Whois;
use super::render::Shown;
use super::{Out, Room};
use crate::pubsub::form::Submitted;
use crate::stanza::{Condition, StanzaError};

impl Room {
    pub(super) fn require_owner(&self, from: &FullJid) -> Result<(), StanzaError> {
        if self.affiliation(&from.to_bare()) != Affiliation::Owner {
            return Err(StanzaError::new(Condition::Forbidden).with_text("Only owners may do this"));
        }
        Ok(())
    }

    /// `muc#owner` get: the configuration form (XEP-0045 10.2).
    pub fn config_form(&self, from: &FullJid) -> Result<Element, StanzaError> {
        self.require_owner(from)?;
        Ok(Element::new("query", super::super::MUC_OWNER).with_child(self.config.to_form()))
    }

    /// `muc#owner` set with a form: applies it and unlocks the room; an
    /// empty submission is the instant room (10.1.2). Members-only removes
    /// non-members (status 322); occupants hear of the change (104).
    pub fn configure(&mut self, from: &FullJid, x: &Element) -> Result<Vec<Out>, StanzaError> {
        self.require_owner(from)?;
        let form = Submitted::parse(x);
        let next = self.config.apply(&form)?;
        let became_members_only = next.members_only && !self.config.members_only;
        let mut codes = vec![104];
        if next.whois != self.config.whois {
            codes.push(if next.whois == Whois::Anyone {
                172
            } else {
                173
            });
        }
        if next.logging != self.config.logging {
            codes.push(if next.logging { 170 } else { 171 });
        }
        self.config = next;
        let was_locked = std::mem::replace(&mut self.locked, false);
        let mut out = Vec::new();
        if became_members_only {
            let outsiders: Vec<FullJid> = self
                .occupants
                .iter()
                .filter(|o| self.affiliation(&o.jid.to_bare()) < Affiliation::Member)
                .map(|o| o.jid.clone())
                .collect();
            for jid in outsiders {
                let index = self.index_of(&jid).expect("listed above");
                let removed = self.occupants.remove(index);
                let shown = Shown::new(&removed, Affiliation::None).gone(&[322]);
                self.tell_leaver(&shown, &[], &mut out);
                self.broadcast(&shown, &[], &mut out);
            }
        }
        if !was_locked {
            for to in &self.occupants {
                let mut x = Element::new("x", MUC_USER);
                for code in &codes {
                    x.push_child(
                        Element::new("status", MUC_USER).with_attr("code", code.to_string()),
                    );
                }
                out.push(Out {
                    to: to.jid.clone().into(),
                    stanza: Element::new("message", ns::CLIENT)
                        .with_attr("from", self.jid.as_str())
                        .with_attr("to", to.jid.as_str())
                        .with_attr("type", "groupchat")
                        .with_child(x),
                    about: None,
                });
            }
        }
        Ok(out)
    }

    /// `muc#owner` destroy (XEP-0045 10.9): everyone leaves, told where
    /// the conversation went. The module removes the room.
    pub fn destroy(&mut self, from: &FullJid, destroy: &Element) -> Result<Vec<Out>, StanzaError> {
        self.require_owner(from)?;
        let mut told = Element::new("destroy", MUC_USER);
        if let Some(jid) = destroy.attr("jid") {
            told.set_attr("jid", jid);
        }
        if let Some(reason) = destroy.child("reason", super::super::MUC_OWNER) {
            told.push_child(Element::new("reason", MUC_USER).with_text(reason.text()));
        }
        let mut out = Vec::new();
        for occupant in std::mem::take(&mut self.occupants) {
            let mut shown = Shown::new(&occupant, Affiliation::None).gone(&[]);
            shown.destroy = Some(&told);
            self.tell_leaver(&shown, &[], &mut out);
        }
        Ok(out)
    }

    /// The service stops with nowhere to move the room: everyone leaves
    /// with status 332.
    pub fn shut_down(&mut self) -> Vec<Out> {
        let mut out = Vec::new();
        for occupant in std::mem::take(&mut self.occupants) {
            let shown =
                Shown::new(&occupant, self.affiliation(&occupant.jid.to_bare())).gone(&[332]);
            self.tell_leaver(&shown, &[], &mut out);
        }
        out
    }
}
