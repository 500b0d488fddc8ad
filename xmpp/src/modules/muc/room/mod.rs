//! One room's live state and the XEP-0045 rules applied to it. Pure logic:
//! each operation checks the request against the room and returns the
//! stanzas to send ([`Out`]) or the error for the sender; the module
//! (`mod.rs`) stores, routes and relays them.

use std::collections::BTreeMap;

use base64::Engine;
use sha2::{Digest, Sha256};
use starling_core::jid::{BareJid, FullJid, Jid};
use starling_core::xml::Element;

use super::affiliation::{Affiliation, Role};
use super::config_form::RoomConfig;
use super::history::History;
use crate::stanza::{Condition, StanzaError};

mod admin;
mod bucket;
mod disco;
mod invitations;
mod messages;
mod moderation;
mod occupant_iq;
mod owner;
mod presence;
mod registration;
mod render;
#[cfg(test)]
mod tests;
mod transfer;

use self::bucket::Bucket;
use self::occupant_iq::PendingIqs;
pub use self::registration::{REGISTER, ROOMUSER_NODE, Registration};

/// A stanza the room sends, with `to` already set.
#[derive(Debug, Clone)]
pub struct Out {
    pub to: Jid,
    pub stanza: Element,
    /// For presence of an occupant: that occupant's real JID, so the
    /// members delivering it can keep their copy of the occupant list.
    pub about: Option<FullJid>,
}

/// The service's limits every room obeys.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_occupants: u32,
    pub max_subject_chars: usize,
    pub history_size: usize,
    /// Messages an occupant may send per second, on average.
    pub messages_per_second: f64,
    /// Messages an occupant may send at once before the rate applies.
    pub message_burst: f64,
}

#[derive(Debug, Clone)]
pub struct Occupant {
    pub nick: String,
    pub jid: FullJid,
    pub role: Role,
    /// The children of the occupant's last presence (show, status, caps).
    presence: Vec<Element>,
    /// XEP-0421: stable per room and user, reveals nothing of the JID.
    pub id: String,
    bucket: Bucket,
}

pub struct Room {
    pub jid: BareJid,
    pub config: RoomConfig,
    affiliations: BTreeMap<BareJid, Affiliation>,
    /// Nicks reserved by registration (XEP-0045 7.12), one per account.
    nicks: BTreeMap<BareJid, String>,
    occupants: Vec<Occupant>,
    /// The subject and who set it (a nick; empty: the room itself).
    subject: (String, String),
    history: History,
    /// A new room refuses everyone but its owner until configured
    /// (XEP-0045 10.1.1).
    pub locked: bool,
    /// Handed over to another member: whoever waited for the lock must
    /// send their stanza after it.
    pub moved: bool,
    salt: String,
    /// Iqs passed on between occupants, awaiting their answers.
    pending_iqs: PendingIqs,
}

/// What a stored room holds (the module reads and writes it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Persistent {
    pub config: RoomConfig,
    pub subject: String,
    pub subject_by: String,
    pub affiliations: Vec<(BareJid, Affiliation)>,
    /// Reserved nicks (each holder has an affiliation).
    pub nicks: Vec<(BareJid, String)>,
}

impl Room {
    pub fn new(
        jid: BareJid,
        config: RoomConfig,
        history_size: usize,
        locked: bool,
        salt: &str,
    ) -> Room {
        Room {
            jid,
            config,
            affiliations: BTreeMap::new(),
            nicks: BTreeMap::new(),
            occupants: Vec::new(),
            subject: (String::new(), String::new()),
            history: History::new(history_size),
            locked,
            moved: false,
            salt: salt.to_owned(),
            pending_iqs: PendingIqs::default(),
        }
    }

    pub fn restore(jid: BareJid, stored: Persistent, history_size: usize, salt: &str) -> Room {
        let mut room = Room::new(jid, stored.config, history_size, false, salt);
        room.subject = (stored.subject, stored.subject_by);
        room.affiliations = stored.affiliations.into_iter().collect();
        room.nicks = stored.nicks.into_iter().collect();
        room
    }

    pub fn persistent(&self) -> Persistent {
        Persistent {
            config: self.config.clone(),
            subject: self.subject.0.clone(),
            subject_by: self.subject.1.clone(),
            affiliations: self
                .affiliations
                .iter()
                .map(|(jid, affiliation)| (jid.clone(), *affiliation))
                .collect(),
            nicks: self
                .nicks
                .iter()
                .map(|(jid, nick)| (jid.clone(), nick.clone()))
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.occupants.is_empty()
    }

    pub fn occupant_count(&self) -> usize {
        self.occupants.len()
    }

    pub fn occupants(&self) -> impl Iterator<Item = &Occupant> {
        self.occupants.iter()
    }

    pub fn affiliation(&self, jid: &BareJid) -> Affiliation {
        self.affiliations
            .get(jid)
            .copied()
            .unwrap_or(Affiliation::None)
    }

    pub fn set_owner(&mut self, jid: BareJid) {
        self.affiliations.insert(jid, Affiliation::Owner);
    }

    pub fn occupant(&self, jid: &FullJid) -> Option<&Occupant> {
        self.occupants.iter().find(|o| &o.jid == jid)
    }

    fn index_of(&self, jid: &FullJid) -> Option<usize> {
        self.occupants.iter().position(|o| &o.jid == jid)
    }

    fn index_of_nick(&self, nick: &str) -> Option<usize> {
        self.occupants.iter().position(|o| o.nick == nick)
    }

    /// The index of a nick's occupant, or the error for a nick nobody has.
    fn occupant_index(&self, nick: &str) -> Result<usize, StanzaError> {
        self.index_of_nick(nick).ok_or_else(|| {
            StanzaError::new(Condition::ItemNotFound).with_text("No occupant has that nick")
        })
    }

    pub fn nick_jid(&self, nick: &str) -> Jid {
        Jid::new(&format!("{}/{nick}", self.jid)).unwrap_or_else(|_| self.jid.clone().into())
    }

    fn occupant_id(&self, user: &BareJid) -> String {
        let digest = Sha256::digest(format!("{}\0{}\0{user}", self.salt, self.jid).as_bytes());
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(&digest[..18])
    }
}

fn bad_request(text: &str) -> StanzaError {
    StanzaError::new(Condition::BadRequest).with_text(text)
}
