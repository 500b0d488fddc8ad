//! Iqs from one occupant to another through the room (XEP-0045 7.5 for
//! messages, the same rules for iqs): the request goes to the target's
//! real JID from the asker's room JID, and the answer comes back the same
//! way, so neither learns the other's JID. A vCard request goes to the
//! target's account (vcard-temp lives on the bare JID), which the target's
//! server answers. Occupants may query each other when the room says so
//! (`allow_query_users`).

use std::collections::VecDeque;

use starling_core::jid::{FullJid, Jid};
use starling_core::xml::Element;

use super::{Out, Room};
use crate::stanza::{Condition, StanzaError};

const VCARD: &str = "vcard-temp";
/// Requests awaiting an answer, per room; the oldest are forgotten first
/// (their answers then have nowhere to go and are dropped).
const MAX_PENDING: usize = 256;

/// A request passed on, remembered until its answer comes back.
#[derive(Debug, Clone)]
pub(super) struct Pending {
    /// Where the request went: the answer comes from there.
    target: Jid,
    id: String,
    asker: FullJid,
    asker_nick: String,
    target_nick: String,
}

#[derive(Debug, Clone, Default)]
pub(super) struct PendingIqs(VecDeque<Pending>);

impl Room {
    /// An iq get or set from an occupant to `nick`: the stanza for the
    /// target, from the asker's room JID.
    pub fn forward_iq(
        &mut self,
        from: &FullJid,
        nick: &str,
        iq: &Element,
    ) -> Result<Out, StanzaError> {
        let asker = self.occupant(from).ok_or_else(|| {
            StanzaError::new(Condition::NotAcceptable)
                .with_text("Only occupants may send requests to occupants")
        })?;
        let asker_nick = asker.nick.clone();
        if !self.config.allow_query_users {
            return Err(StanzaError::new(Condition::NotAllowed)
                .with_text("This room does not pass requests on to occupants"));
        }
        let id = iq
            .attr("id")
            .filter(|id| !id.is_empty())
            .ok_or_else(|| StanzaError::new(Condition::BadRequest).with_text("An iq needs an id"))?
            .to_owned();
        let target = &self.occupants[self.occupant_index(nick)?];
        let vcard = iq.children().any(|c| c.ns() == VCARD);
        let to: Jid = if vcard {
            target.jid.to_bare().into()
        } else {
            target.jid.clone().into()
        };
        let mut stanza = iq.clone();
        stanza.set_attr("from", self.nick_jid(&asker_nick).as_str());
        stanza.set_attr("to", to.as_str());
        let pending = Pending {
            target: to.clone(),
            id,
            asker: from.clone(),
            asker_nick,
            target_nick: target.nick.clone(),
        };
        // A repeated id to the same target replaces the older request.
        self.pending_iqs.0.retain(|p| {
            !(p.target == pending.target && p.id == pending.id && p.asker == pending.asker)
        });
        if self.pending_iqs.0.len() >= MAX_PENDING {
            self.pending_iqs.0.pop_front();
        }
        self.pending_iqs.0.push_back(pending);
        Ok(Out {
            to,
            stanza,
            about: None,
        })
    }

    /// A result or error from `from` to `nick` answering a request passed
    /// on: the stanza for the asker, from the target's room JID. `None`
    /// when no such request is waiting (then nothing is sent).
    pub fn answer_iq(&mut self, from: &Jid, nick: &str, iq: &Element) -> Option<Out> {
        let id = iq.attr("id")?;
        let index = self
            .pending_iqs
            .0
            .iter()
            .position(|p| &p.target == from && p.id == id && p.asker_nick == nick)?;
        let pending = self.pending_iqs.0.remove(index)?;
        let mut stanza = iq.clone();
        stanza.set_attr("from", self.nick_jid(&pending.target_nick).as_str());
        stanza.set_attr("to", pending.asker.as_str());
        Some(Out {
            to: pending.asker.into(),
            stanza,
            about: None,
        })
    }
}
