//! XEP-0045 7.12 (and 10.x member lists): registering with a room reserves
//! a nickname for the user's account and makes them a member. A reserved
//! nick is refused to everyone else (join or nick change: `<conflict/>`),
//! and disco#info on the `x-roomuser-item` node tells its holder.

use starling_core::jid::{BareJid, FullJid};
use starling_core::xml::{Element, ns};

use super::super::affiliation::Affiliation;
use super::Room;
use crate::pubsub::form::{FormBuilder, Submitted};
use crate::stanza::{Condition, StanzaError};

pub const REGISTER: &str = "jabber:iq:register";
const FORM_TYPE: &str = "http://jabber.org/protocol/muc#register";
const NICK_FIELD: &str = "muc#register_roomnick";
/// XEP-0045 7.12: the disco node that names one's reserved nick.
pub const ROOMUSER_NODE: &str = "x-roomuser-item";

/// What a registration set asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Registration {
    /// Reserve this nick (the form's `muc#register_roomnick`).
    Nick(String),
    /// The form was cancelled: nothing changes.
    Cancel,
    /// `<remove/>`: give the reservation up.
    Remove,
}

impl Registration {
    pub fn parse(query: &Element) -> Result<Registration, StanzaError> {
        if query.child("remove", REGISTER).is_some() {
            return Ok(Registration::Remove);
        }
        let x = query
            .child("x", ns::XDATA)
            .ok_or_else(|| bad_request("Register with the muc#register form"))?;
        if x.attr("type") == Some("cancel") {
            return Ok(Registration::Cancel);
        }
        let form = Submitted::parse(x);
        if form.form_type.as_deref().is_some_and(|t| t != FORM_TYPE) {
            return Err(bad_request("The form's FORM_TYPE must be muc#register"));
        }
        match form.value(NICK_FIELD) {
            Some(nick) if !nick.is_empty() => Ok(Registration::Nick(nick.to_owned())),
            _ => Err(StanzaError::new(Condition::NotAcceptable)
                .with_text("The form needs muc#register_roomnick")),
        }
    }
}

fn bad_request(text: &str) -> StanzaError {
    StanzaError::new(Condition::BadRequest).with_text(text)
}

impl Room {
    /// The nick `user` reserved, if any.
    pub fn reserved_nick(&self, user: &BareJid) -> Option<&str> {
        self.nicks.get(user).map(String::as_str)
    }

    /// Whether `nick` is reserved for an account other than `user`.
    pub(super) fn reserved_by_other(&self, nick: &str, user: &BareJid) -> bool {
        self.nicks
            .iter()
            .any(|(holder, held)| held == nick && holder != user)
    }

    /// Registration get: the reservation held, or the form to ask for one.
    pub fn registration_form(&self, from: &FullJid) -> Result<Element, StanzaError> {
        let user = from.to_bare();
        self.may_register(&user)?;
        let mut query = Element::new("query", REGISTER);
        if let Some(nick) = self.reserved_nick(&user) {
            query.push_child(Element::new("registered", REGISTER));
            query.push_child(Element::new("username", REGISTER).with_text(nick));
            return Ok(query);
        }
        query.push_child(
            Element::new("instructions", REGISTER)
                .with_text("Reserve a nickname in this room; you become a member."),
        );
        let mut form = FormBuilder::new("form", FORM_TYPE);
        form.field(NICK_FIELD, "text-single", Some("Nickname"), &[]);
        query.push_child(form.build());
        Ok(query)
    }

    fn may_register(&self, user: &BareJid) -> Result<Affiliation, StanzaError> {
        let affiliation = self.affiliation(user);
        if affiliation == Affiliation::Outcast {
            return Err(StanzaError::new(Condition::Forbidden).with_text("You are banned"));
        }
        // Registering makes a member; a members-only room's list is the
        // admins' to keep.
        if self.config.members_only && affiliation < Affiliation::Member {
            return Err(StanzaError::new(Condition::RegistrationRequired)
                .with_text("The room is for members only; ask an admin for membership"));
        }
        Ok(affiliation)
    }

    /// Registration set. `Ok(true)` when affiliations or reservations
    /// changed, for the module to store them.
    pub fn register(
        &mut self,
        from: &FullJid,
        request: &Registration,
    ) -> Result<bool, StanzaError> {
        let user = from.to_bare();
        match request {
            Registration::Cancel => Ok(false),
            Registration::Remove => Ok(self.nicks.remove(&user).is_some()),
            Registration::Nick(nick) => {
                let affiliation = self.may_register(&user)?;
                let in_use = self
                    .occupants
                    .iter()
                    .any(|o| &o.nick == nick && o.jid.to_bare() != user);
                if in_use || self.reserved_by_other(nick, &user) {
                    return Err(StanzaError::new(Condition::Conflict)
                        .with_text("That nickname is taken in this room"));
                }
                if affiliation == Affiliation::None {
                    self.affiliations.insert(user.clone(), Affiliation::Member);
                }
                self.nicks.insert(user, nick.clone());
                Ok(true)
            }
        }
    }

    /// Disco#info on the `x-roomuser-item` node: the asker's reserved nick
    /// as an identity, or an empty answer when they have none.
    pub fn reserved_nick_info(&self, from: &FullJid) -> Element {
        let mut query = Element::new("query", ns::DISCO_INFO).with_attr("node", ROOMUSER_NODE);
        if let Some(nick) = self.reserved_nick(&from.to_bare()) {
            query.push_child(
                Element::new("identity", ns::DISCO_INFO)
                    .with_attr("category", "conference")
                    .with_attr("type", "text")
                    .with_attr("name", nick),
            );
        }
        query
    }

    /// An affiliation that no longer admits a member takes the reserved
    /// nick with it.
    pub(super) fn forget_nick_unless_member(&mut self, user: &BareJid) {
        if self.affiliation(user) < Affiliation::Member {
            self.nicks.remove(user);
        }
    }
}
