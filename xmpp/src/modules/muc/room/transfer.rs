//! A room's whole live state handed from one member to the next.

use starling_core::jid::{BareJid, FullJid};
use starling_core::xml::Element;

use super::super::affiliation::{Affiliation, Role};
use super::bucket::Bucket;
use super::{Limits, Occupant, Room};

impl Room {
    /// The room's whole live state, for the member that hosts it next
    /// (`hosting.rs`): configuration, affiliations, subject, occupants and
    /// history. The room is emptied: it lives on over there.
    pub fn hand_over(&mut self) -> Element {
        self.moved = true;
        let config = serde_json::to_string(&self.config).unwrap_or_default();
        let mut handover = Element::new("handover", super::super::RELAY)
            .with_attr("room", self.jid.as_str())
            .with_attr("subject", &self.subject.0)
            .with_attr("subject-by", &self.subject.1)
            .with_attr("locked", if self.locked { "1" } else { "0" })
            .with_child(Element::new("config", super::super::RELAY).with_text(config));
        for (jid, affiliation) in &self.affiliations {
            let mut element = Element::new("affiliation", super::super::RELAY)
                .with_attr("jid", jid.as_str())
                .with_attr("affiliation", affiliation.as_str());
            if let Some(nick) = self.nicks.get(jid) {
                element.set_attr("nick", nick);
            }
            handover.push_child(element);
        }
        for occupant in std::mem::take(&mut self.occupants) {
            let mut element = Element::new("occupant", super::super::RELAY)
                .with_attr("jid", occupant.jid.as_str())
                .with_attr("nick", &occupant.nick)
                .with_attr("role", occupant.role.as_str());
            for child in occupant.presence {
                element.push_child(child);
            }
            handover.push_child(element);
        }
        for entry in self.history.entries() {
            handover.push_child(
                Element::new("history", super::super::RELAY)
                    .with_attr("stamp", entry.stamp_ms.to_string())
                    .with_child(entry.stanza.clone()),
            );
        }
        handover
    }

    /// Takes in a room handed over by its previous host. Occupants whose
    /// nick is taken here meanwhile (a join raced the handover) stay out.
    pub fn take_over(&mut self, handover: &Element, limits: &Limits, now_ms: i64) {
        if let Some(config) = handover
            .child("config", super::super::RELAY)
            .and_then(|c| serde_json::from_str(&c.text()).ok())
        {
            self.config = config;
        }
        self.subject = (
            handover.attr("subject").unwrap_or("").to_owned(),
            handover.attr("subject-by").unwrap_or("").to_owned(),
        );
        self.locked = handover.attr("locked") == Some("1");
        for child in handover.children() {
            match child.name() {
                "affiliation" => {
                    let jid = child.attr("jid").and_then(|j| BareJid::new(j).ok());
                    let affiliation = child.attr("affiliation").and_then(Affiliation::parse);
                    if let (Some(jid), Some(affiliation)) = (jid, affiliation) {
                        if let Some(nick) = child.attr("nick") {
                            self.nicks.insert(jid.clone(), nick.to_owned());
                        }
                        self.affiliations.insert(jid, affiliation);
                    }
                }
                "occupant" => {
                    let jid = child.attr("jid").and_then(|j| FullJid::new(j).ok());
                    let role = child.attr("role").and_then(Role::parse);
                    let (Some(jid), Some(nick), Some(role)) = (jid, child.attr("nick"), role)
                    else {
                        continue;
                    };
                    if self.index_of(&jid).is_some() || self.index_of_nick(nick).is_some() {
                        continue;
                    }
                    let id = self.occupant_id(&jid.to_bare());
                    self.occupants.push(Occupant {
                        nick: nick.to_owned(),
                        jid,
                        role,
                        presence: child.children().cloned().collect(),
                        id,
                        bucket: Bucket::full(limits, now_ms),
                    });
                }
                "history" => {
                    let stamp = child.attr("stamp").and_then(|s| s.parse().ok());
                    if let (Some(stamp), Some(stanza)) = (stamp, child.children().next()) {
                        self.history.push(stanza.clone(), stamp);
                    }
                }
                _ => {}
            }
        }
    }
}
