//! Roles and affiliations: the `muc#admin` lists, kicks and bans
//! (XEP-0045 8, 9, 10).

use starling_core::jid::{BareJid, FullJid, Jid};
use starling_core::xml::Element;

use super::super::MUC_ADMIN;
use super::super::affiliation::{self, Affiliation, Role};
use super::render::Shown;
use super::{Out, Room, bad_request};
use crate::stanza::{Condition, StanzaError};

impl Room {
    /// `muc#admin` get: the occupants with a role, or the JIDs with an
    /// affiliation (XEP-0045 8.5, 9.5, 10.5).
    pub fn admin_get(&self, from: &FullJid, query: &Element) -> Result<Element, StanzaError> {
        let item = query
            .child("item", MUC_ADMIN)
            .ok_or_else(|| bad_request("The query needs an <item/>"))?;
        let actor_affiliation = self.affiliation(&from.to_bare());
        let actor_role = self.occupant(from).map_or(Role::None, |o| o.role);
        let mut answer = Element::new("query", MUC_ADMIN);
        if let Some(role) = item.attr("role") {
            let role = Role::parse(role).ok_or_else(|| bad_request("Unknown role"))?;
            if actor_role != Role::Moderator {
                return Err(Condition::Forbidden.into());
            }
            for occupant in self.occupants.iter().filter(|o| o.role == role) {
                answer.push_child(
                    Element::new("item", MUC_ADMIN)
                        .with_attr("nick", &occupant.nick)
                        .with_attr("role", role.as_str())
                        .with_attr("jid", occupant.jid.as_str())
                        .with_attr(
                            "affiliation",
                            self.affiliation(&occupant.jid.to_bare()).as_str(),
                        ),
                );
            }
            return Ok(answer);
        }
        let list = item
            .attr("affiliation")
            .and_then(Affiliation::parse)
            .ok_or_else(|| bad_request("The item needs a role or an affiliation"))?;
        if !affiliation::may_list_affiliation(actor_affiliation, list) {
            return Err(Condition::Forbidden.into());
        }
        for (jid, _) in self.affiliations.iter().filter(|(_, a)| **a == list) {
            answer.push_child(
                Element::new("item", MUC_ADMIN)
                    .with_attr("affiliation", list.as_str())
                    .with_attr("jid", jid.as_str()),
            );
        }
        Ok(answer)
    }

    /// `muc#admin` set: role and affiliation changes, all checked before
    /// any is made (XEP-0045 8, 9, 10). Returns whether affiliations
    /// changed, for the module to store them.
    pub fn admin_set(
        &mut self,
        from: &FullJid,
        query: &Element,
    ) -> Result<(Vec<Out>, bool), StanzaError> {
        let actor = self.occupant(from);
        let actor_nick = actor.map(|o| o.nick.clone());
        let actor_affiliation = self.affiliation(&from.to_bare());
        let actor_role = actor.map_or(Role::None, |o| o.role);
        enum Change {
            Role(usize, Role),
            Affiliation(BareJid, Affiliation),
        }
        let mut changes = Vec::new();
        for item in query.children().filter(|c| c.is("item", MUC_ADMIN)) {
            let reason = item.child("reason", MUC_ADMIN).map(Element::text);
            if let Some(role) = item.attr("role") {
                let role = Role::parse(role).ok_or_else(|| bad_request("Unknown role"))?;
                if actor_role != Role::Moderator {
                    return Err(StanzaError::new(Condition::Forbidden)
                        .with_text("Only moderators change roles"));
                }
                let nick = item
                    .attr("nick")
                    .ok_or_else(|| bad_request("A role change names a nick"))?;
                let index = self.occupant_index(nick)?;
                let target = &self.occupants[index];
                let target_affiliation = self.affiliation(&target.jid.to_bare());
                affiliation::may_set_role(
                    (actor_affiliation, actor_role),
                    (target_affiliation, target.role),
                    role,
                )
                .map_err(StanzaError::new)?;
                changes.push((Change::Role(index, role), reason));
            } else if let Some(affiliation) = item.attr("affiliation") {
                let affiliation = Affiliation::parse(affiliation)
                    .ok_or_else(|| bad_request("Unknown affiliation"))?;
                if actor_affiliation < Affiliation::Admin {
                    return Err(StanzaError::new(Condition::Forbidden)
                        .with_text("Only admins and owners change affiliations"));
                }
                let jid = item
                    .attr("jid")
                    .and_then(|jid| Jid::new(jid).ok())
                    .map(|jid| jid.to_bare())
                    .or_else(|| {
                        item.attr("nick")
                            .and_then(|nick| self.index_of_nick(nick))
                            .map(|index| self.occupants[index].jid.to_bare())
                    })
                    .ok_or_else(|| bad_request("An affiliation change names a JID"))?;
                let current = self.affiliation(&jid);
                affiliation::may_set_affiliation(actor_affiliation, current, affiliation)
                    .map_err(StanzaError::new)?;
                let owners = self
                    .affiliations
                    .values()
                    .filter(|a| **a == Affiliation::Owner)
                    .count();
                if current == Affiliation::Owner && affiliation != Affiliation::Owner && owners == 1
                {
                    return Err(StanzaError::new(Condition::Conflict)
                        .with_text("The room must keep an owner"));
                }
                changes.push((Change::Affiliation(jid, affiliation), reason));
            } else {
                return Err(bad_request("An item needs a role or an affiliation"));
            }
        }
        if changes.is_empty() {
            return Err(bad_request("No items"));
        }
        let mut out = Vec::new();
        let mut affiliations_changed = false;
        // Kicks remove occupants; index-based changes are applied by JID.
        let changes: Vec<(Change, Option<String>)> = changes;
        let by_jid: Vec<_> = changes
            .into_iter()
            .map(|(change, reason)| match change {
                Change::Role(index, role) => {
                    (Ok((self.occupants[index].jid.clone(), role)), reason)
                }
                Change::Affiliation(jid, affiliation) => (Err((jid, affiliation)), reason),
            })
            .collect();
        for (change, reason) in by_jid {
            match change {
                Ok((jid, role)) => {
                    let Some(index) = self.index_of(&jid) else {
                        continue;
                    };
                    let affiliation = self.affiliation(&jid.to_bare());
                    if role == Role::None {
                        let kicked = self.occupants.remove(index);
                        let mut shown = Shown::new(&kicked, affiliation).gone(&[307]);
                        shown.actor = actor_nick.as_deref();
                        shown.reason = reason.as_deref();
                        self.tell_leaver(&shown, &[], &mut out);
                        self.broadcast(&shown, &[], &mut out);
                    } else {
                        self.occupants[index].role = role;
                        let occupant = self.occupants[index].clone();
                        let mut shown = Shown::new(&occupant, affiliation);
                        shown.reason = reason.as_deref();
                        self.broadcast(&shown, &[], &mut out);
                    }
                }
                Err((jid, affiliation)) => {
                    affiliations_changed = true;
                    if affiliation == Affiliation::None {
                        self.affiliations.remove(&jid);
                    } else {
                        self.affiliations.insert(jid.clone(), affiliation);
                    }
                    self.forget_nick_unless_member(&jid);
                    let removal = if affiliation == Affiliation::Outcast {
                        Some(301)
                    } else if self.config.members_only && affiliation < Affiliation::Member {
                        Some(321)
                    } else {
                        None
                    };
                    let holders: Vec<FullJid> = self
                        .occupants
                        .iter()
                        .filter(|o| o.jid.to_bare() == jid)
                        .map(|o| o.jid.clone())
                        .collect();
                    for holder in holders {
                        let index = self.index_of(&holder).expect("listed above");
                        match removal {
                            Some(code) => {
                                let removed = self.occupants.remove(index);
                                let mut shown = Shown::new(&removed, affiliation).gone(&[code]);
                                shown.actor = actor_nick.as_deref();
                                shown.reason = reason.as_deref();
                                self.tell_leaver(&shown, &[], &mut out);
                                self.broadcast(&shown, &[], &mut out);
                            }
                            None => {
                                self.occupants[index].role =
                                    affiliation::default_role(affiliation, self.config.moderated);
                                let occupant = self.occupants[index].clone();
                                let mut shown = Shown::new(&occupant, affiliation);
                                shown.reason = reason.as_deref();
                                self.broadcast(&shown, &[], &mut out);
                            }
                        }
                    }
                }
            }
        }
        Ok((out, affiliations_changed))
    }
}
