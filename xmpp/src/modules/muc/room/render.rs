//! How the room shows an occupant's presence to the others: the
//! `muc#user` item, status codes and occupant id, per viewer.

use starling_core::xml::{Element, ns};

use super::super::affiliation::{Affiliation, Role};
use super::super::config_form::Whois;
use super::super::{MUC, MUC_USER, OCCUPANT_ID};
use super::{Occupant, Out, Room};

/// How an occupant's presence is to be shown.
pub(super) struct Shown<'a> {
    pub(super) occupant: &'a Occupant,
    pub(super) affiliation: Affiliation,
    pub(super) role: Role,
    pub(super) unavailable: bool,
    pub(super) codes: Vec<u16>,
    pub(super) new_nick: Option<&'a str>,
    pub(super) actor: Option<&'a str>,
    pub(super) reason: Option<&'a str>,
    pub(super) destroy: Option<&'a Element>,
}

impl<'a> Shown<'a> {
    pub(super) fn new(occupant: &'a Occupant, affiliation: Affiliation) -> Shown<'a> {
        Shown {
            occupant,
            affiliation,
            role: occupant.role,
            unavailable: false,
            codes: Vec::new(),
            new_nick: None,
            actor: None,
            reason: None,
            destroy: None,
        }
    }

    pub(super) fn gone(mut self, codes: &[u16]) -> Shown<'a> {
        self.unavailable = true;
        self.role = Role::None;
        self.codes.extend_from_slice(codes);
        self
    }
}

impl Room {
    /// Whether `viewer` sees real JIDs of other occupants.
    pub(super) fn sees_jids(&self, viewer: &Occupant) -> bool {
        self.config.whois == Whois::Anyone || viewer.role == Role::Moderator
    }

    pub(super) fn render(&self, shown: &Shown, to: &Occupant) -> Element {
        let occupant = shown.occupant;
        let mut presence = Element::new("presence", ns::CLIENT)
            .with_attr("from", self.nick_jid(&occupant.nick).as_str());
        presence.set_attr("to", to.jid.as_str());
        if shown.unavailable {
            presence.set_attr("type", "unavailable");
        }
        for child in &occupant.presence {
            presence.push_child(child.clone());
        }
        let myself = to.jid == occupant.jid;
        let mut x = Element::new("x", MUC_USER);
        let mut item = Element::new("item", MUC_USER)
            .with_attr("affiliation", shown.affiliation.as_str())
            .with_attr("role", shown.role.as_str());
        if myself || self.sees_jids(to) {
            item.set_attr("jid", occupant.jid.as_str());
        }
        if let Some(nick) = shown.new_nick {
            item.set_attr("nick", nick);
        }
        if let Some(actor) = shown.actor {
            item.push_child(Element::new("actor", MUC_USER).with_attr("nick", actor));
        }
        if let Some(reason) = shown.reason {
            item.push_child(Element::new("reason", MUC_USER).with_text(reason));
        }
        x.push_child(item);
        if let Some(destroy) = shown.destroy {
            x.push_child(destroy.clone());
        }
        let mut codes = shown.codes.clone();
        if myself {
            codes.push(110);
        }
        codes.sort_unstable();
        codes.dedup();
        for code in codes {
            x.push_child(Element::new("status", MUC_USER).with_attr("code", code.to_string()));
        }
        presence.push_child(x);
        presence.push_child(Element::new("occupant-id", OCCUPANT_ID).with_attr("id", &occupant.id));
        presence
    }

    /// `shown` to every occupant; `self_codes` only to the occupant shown.
    pub(super) fn broadcast(&self, shown: &Shown, self_codes: &[u16], out: &mut Vec<Out>) {
        for to in &self.occupants {
            let mut stanza = self.render(shown, to);
            if to.jid == shown.occupant.jid && !self_codes.is_empty() {
                let x = stanza.child_mut("x", MUC_USER).expect("rendered above");
                for code in self_codes {
                    x.push_child(
                        Element::new("status", MUC_USER).with_attr("code", code.to_string()),
                    );
                }
            }
            out.push(Out {
                to: to.jid.clone().into(),
                stanza,
                about: Some(shown.occupant.jid.clone()),
            });
        }
    }

    /// The same shown to one occupant who is no longer in the list.
    pub(super) fn tell_leaver(&self, shown: &Shown, self_codes: &[u16], out: &mut Vec<Out>) {
        let mut stanza = self.render(shown, shown.occupant);
        if let Some(x) = stanza.child_mut("x", MUC_USER) {
            for code in self_codes {
                x.push_child(Element::new("status", MUC_USER).with_attr("code", code.to_string()));
            }
        }
        out.push(Out {
            to: shown.occupant.jid.clone().into(),
            stanza,
            about: Some(shown.occupant.jid.clone()),
        });
    }
}

/// The children of a presence the room repeats to others: its own
/// protocol elements are dropped (the room writes its `<x/>`).
pub(super) fn presence_children(presence: &Element) -> Vec<Element> {
    presence
        .children()
        .filter(|c| {
            !(c.ns() == MUC || c.ns() == MUC_USER || c.ns() == OCCUPANT_ID || c.ns() == ns::STANZAS)
        })
        .cloned()
        .collect()
}
