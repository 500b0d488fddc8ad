//! XEP-0425: a moderator retracts a message. The room's side: who may, the
//! kept history losing the message, and the notice occupants get. The
//! archive's side is `muc/moderation.rs`.

use starling_core::jid::FullJid;
use starling_core::xml::Element;

use super::super::affiliation::Role;
use super::super::archive::SID;
use super::{Out, Room};
use crate::stanza::{Condition, StanzaError};

impl Room {
    /// The moderator asking, as the room shows them: nick and occupant id.
    pub fn moderator(&self, from: &FullJid) -> Result<(String, String), StanzaError> {
        match self.occupant(from) {
            Some(occupant) if occupant.role == Role::Moderator => {
                Ok((occupant.nick.clone(), occupant.id.clone()))
            }
            _ => Err(StanzaError::new(Condition::Forbidden)
                .with_text("Only moderators of the room retract messages")),
        }
    }

    /// Replaces the kept copy of message `id` by its tombstone, so later
    /// joiners do not get it, and tells every occupant with `notice` (a
    /// message from the room carrying the retraction).
    pub fn retract(&mut self, id: &str, tombstone: &Element, notice: &Element) -> Vec<Out> {
        let by_room = |stanza: &Element| {
            stanza
                .children()
                .any(|c| c.is("stanza-id", SID) && c.attr("id") == Some(id))
        };
        self.history.replace(by_room, tombstone);
        self.occupants
            .iter()
            .map(|to| {
                let mut stanza = notice.clone();
                stanza.set_attr("to", to.jid.as_str());
                Out {
                    to: to.jid.clone().into(),
                    stanza,
                    about: None,
                }
            })
            .collect()
    }

    /// `room@service/nick`, as moderators are named in retractions.
    pub fn occupant_jid(&self, nick: &str) -> String {
        self.nick_jid(nick).to_string()
    }
}
