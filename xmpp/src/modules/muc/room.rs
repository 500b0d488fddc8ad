//! One room's live state and the XEP-0045 rules applied to it. Pure logic:
//! each operation checks the request against the room and returns the
//! stanzas to send ([`Out`]) or the error for the sender; the module
//! (`mod.rs`) stores, routes and relays them.

use std::collections::{BTreeMap, HashSet};

use base64::Engine;
use sha2::{Digest, Sha256};
use starling_core::jid::{BareJid, FullJid, Jid};
use starling_core::xml::{Element, ns};

use super::affiliation::{self, Affiliation, Role};
use super::config_form::{AllowPm, RoomConfig, Whois};
use super::history::{History, HistoryRequest};
use super::{MUC, MUC_ADMIN, MUC_USER, OCCUPANT_ID};
use crate::pubsub::form::Submitted;
use crate::stanza::{Condition, ErrorType, StanzaError};
use crate::util::time::xep0082;

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

/// Tokens for an occupant's messages: refilled at the configured rate.
#[derive(Debug, Clone)]
struct Bucket {
    tokens: f64,
    last_ms: i64,
}

impl Bucket {
    fn full(limits: &Limits, now_ms: i64) -> Bucket {
        Bucket {
            tokens: limits.message_burst,
            last_ms: now_ms,
        }
    }

    fn take(&mut self, limits: &Limits, now_ms: i64) -> bool {
        let elapsed = (now_ms - self.last_ms).max(0) as f64 / 1000.0;
        self.tokens =
            (self.tokens + elapsed * limits.messages_per_second).min(limits.message_burst);
        self.last_ms = now_ms;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
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

/// How an occupant's presence is to be shown.
struct Shown<'a> {
    occupant: &'a Occupant,
    affiliation: Affiliation,
    role: Role,
    unavailable: bool,
    codes: Vec<u16>,
    new_nick: Option<&'a str>,
    actor: Option<&'a str>,
    reason: Option<&'a str>,
    destroy: Option<&'a Element>,
}

impl<'a> Shown<'a> {
    fn new(occupant: &'a Occupant, affiliation: Affiliation) -> Shown<'a> {
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

    fn gone(mut self, codes: &[u16]) -> Shown<'a> {
        self.unavailable = true;
        self.role = Role::None;
        self.codes.extend_from_slice(codes);
        self
    }
}

pub struct Room {
    pub jid: BareJid,
    pub config: RoomConfig,
    affiliations: BTreeMap<BareJid, Affiliation>,
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
}

/// What a stored room holds (the module reads and writes it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Persistent {
    pub config: RoomConfig,
    pub subject: String,
    pub subject_by: String,
    pub affiliations: Vec<(BareJid, Affiliation)>,
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
            occupants: Vec::new(),
            subject: (String::new(), String::new()),
            history: History::new(history_size),
            locked,
            moved: false,
            salt: salt.to_owned(),
        }
    }

    pub fn restore(jid: BareJid, stored: Persistent, history_size: usize, salt: &str) -> Room {
        let mut room = Room::new(jid, stored.config, history_size, false, salt);
        room.subject = (stored.subject, stored.subject_by);
        room.affiliations = stored.affiliations.into_iter().collect();
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

    fn nick_jid(&self, nick: &str) -> Jid {
        Jid::new(&format!("{}/{nick}", self.jid)).unwrap_or_else(|_| self.jid.clone().into())
    }

    fn occupant_id(&self, user: &BareJid) -> String {
        let digest = Sha256::digest(format!("{}\0{}\0{user}", self.salt, self.jid).as_bytes());
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(&digest[..18])
    }

    /// Whether `viewer` sees real JIDs of other occupants.
    fn sees_jids(&self, viewer: &Occupant) -> bool {
        self.config.whois == Whois::Anyone || viewer.role == Role::Moderator
    }

    fn render(&self, shown: &Shown, to: &Occupant) -> Element {
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
    fn broadcast(&self, shown: &Shown, self_codes: &[u16], out: &mut Vec<Out>) {
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
    fn tell_leaver(&self, shown: &Shown, self_codes: &[u16], out: &mut Vec<Out>) {
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

    fn subject_message(&self, to: &FullJid) -> Element {
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

    /// The room's whole live state, for the member that hosts it next
    /// (`hosting.rs`): configuration, affiliations, subject, occupants and
    /// history. The room is emptied: it lives on over there.
    pub fn hand_over(&mut self) -> Element {
        self.moved = true;
        let config = serde_json::to_string(&self.config).unwrap_or_default();
        let mut handover = Element::new("handover", super::RELAY)
            .with_attr("room", self.jid.as_str())
            .with_attr("subject", &self.subject.0)
            .with_attr("subject-by", &self.subject.1)
            .with_attr("locked", if self.locked { "1" } else { "0" })
            .with_child(Element::new("config", super::RELAY).with_text(config));
        for (jid, affiliation) in &self.affiliations {
            handover.push_child(
                Element::new("affiliation", super::RELAY)
                    .with_attr("jid", jid.as_str())
                    .with_attr("affiliation", affiliation.as_str()),
            );
        }
        for occupant in std::mem::take(&mut self.occupants) {
            let mut element = Element::new("occupant", super::RELAY)
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
                Element::new("history", super::RELAY)
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
            .child("config", super::RELAY)
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

    /// A groupchat message from an occupant: a subject change (7.2.15,
    /// 8.1) or a message to everyone (7.4). Returns whether the subject
    /// changed, for the module to store it.
    pub fn groupchat(
        &mut self,
        from: &FullJid,
        message: &Element,
        limits: &Limits,
        now_ms: i64,
    ) -> Result<(Vec<Out>, bool), StanzaError> {
        let index = self.index_of(from).ok_or_else(|| {
            StanzaError::new(Condition::NotAcceptable)
                .with_text("Only occupants may send messages to the room")
        })?;
        let role = self.occupants[index].role;
        if role < Role::Participant {
            return Err(StanzaError::new(Condition::Forbidden)
                .with_text("Visitors have no voice in this room"));
        }
        if !self.occupants[index].bucket.take(limits, now_ms) {
            return Err(StanzaError::new(Condition::PolicyViolation)
                .with_type(ErrorType::Wait)
                .with_text("You are sending messages too fast; wait and try again"));
        }
        let nick = self.occupants[index].nick.clone();
        let subject = message.child("subject", ns::CLIENT);
        let has_body = message.child("body", ns::CLIENT).is_some();
        if let Some(subject) = subject.filter(|_| !has_body) {
            if role != Role::Moderator && !self.config.change_subject {
                return Err(StanzaError::new(Condition::Forbidden)
                    .with_text("Only moderators may change the subject"));
            }
            let text = subject.text();
            if text.chars().count() > limits.max_subject_chars {
                return Err(
                    StanzaError::new(Condition::NotAcceptable).with_text(format!(
                        "The subject is longer than {} characters",
                        limits.max_subject_chars
                    )),
                );
            }
            self.subject = (text, nick);
            let out = self
                .occupants
                .iter()
                .map(|to| Out {
                    to: to.jid.clone().into(),
                    stanza: self.subject_message(&to.jid),
                    about: None,
                })
                .collect();
            return Ok((out, true));
        }
        let mut stanza = message.clone();
        stanza.remove_attr("to");
        stanza.set_attr("from", self.nick_jid(&nick).as_str());
        // XEP-0421 3: an occupant id only the room may set.
        stanza.remove_children("occupant-id", OCCUPANT_ID);
        stanza.push_child(
            Element::new("occupant-id", OCCUPANT_ID).with_attr("id", &self.occupants[index].id),
        );
        if has_body && self.config.logging {
            // XEP-0313 / XEP-0359: the room's archive id, set by the room only.
            stanza.remove_children("stanza-id", super::archive::SID);
            stanza.push_child(
                Element::new("stanza-id", super::archive::SID)
                    .with_attr("id", super::archive::new_id())
                    .with_attr("by", self.jid.as_str()),
            );
        }
        if has_body {
            self.history.push(stanza.clone(), now_ms);
        }
        let out = self
            .occupants
            .iter()
            .map(|to| {
                let mut copy = stanza.clone();
                copy.set_attr("to", to.jid.as_str());
                Out {
                    to: to.jid.clone().into(),
                    stanza: copy,
                    about: None,
                }
            })
            .collect();
        Ok((out, false))
    }

    /// A private message from an occupant to `nick` (XEP-0045 7.5).
    pub fn private_message(
        &self,
        from: &FullJid,
        nick: &str,
        message: &Element,
    ) -> Result<Vec<Out>, StanzaError> {
        let sender = self.occupant(from).ok_or_else(|| {
            StanzaError::new(Condition::NotAcceptable)
                .with_text("Only occupants may send private messages")
        })?;
        if message.attr("type") == Some("groupchat") {
            return Err(StanzaError::new(Condition::BadRequest)
                .with_text("A groupchat message goes to the room, not to an occupant"));
        }
        let allowed = match self.config.allow_pm {
            AllowPm::Anyone => true,
            AllowPm::Participants => sender.role >= Role::Participant,
            AllowPm::Moderators => sender.role == Role::Moderator,
            AllowPm::None => false,
        };
        if !allowed {
            return Err(StanzaError::new(Condition::NotAllowed)
                .with_text("Private messages are not allowed in this room"));
        }
        let target = self
            .index_of_nick(nick)
            .map(|index| &self.occupants[index])
            .ok_or_else(|| {
                StanzaError::new(Condition::ItemNotFound).with_text("No occupant has that nick")
            })?;
        let mut stanza = message.clone();
        stanza.set_attr("from", self.nick_jid(&sender.nick).as_str());
        stanza.set_attr("to", target.jid.as_str());
        stanza.remove_children("x", MUC_USER);
        stanza.push_child(Element::new("x", MUC_USER));
        stanza.remove_children("occupant-id", OCCUPANT_ID);
        stanza.push_child(Element::new("occupant-id", OCCUPANT_ID).with_attr("id", &sender.id));
        Ok(vec![Out {
            to: target.jid.clone().into(),
            stanza,
            about: None,
        }])
    }

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

    fn invitation_message(&self, to: &Jid, child: Element, with_password: bool) -> Out {
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
                let index = self.index_of_nick(nick).ok_or_else(|| {
                    StanzaError::new(Condition::ItemNotFound).with_text("No occupant has that nick")
                })?;
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

    fn require_owner(&self, from: &FullJid) -> Result<(), StanzaError> {
        if self.affiliation(&from.to_bare()) != Affiliation::Owner {
            return Err(StanzaError::new(Condition::Forbidden).with_text("Only owners may do this"));
        }
        Ok(())
    }

    /// `muc#owner` get: the configuration form (XEP-0045 10.2).
    pub fn config_form(&self, from: &FullJid) -> Result<Element, StanzaError> {
        self.require_owner(from)?;
        Ok(Element::new("query", super::MUC_OWNER).with_child(self.config.to_form()))
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
        if let Some(reason) = destroy.child("reason", super::MUC_OWNER) {
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

    /// Disco#info on the room (XEP-0045 6.4).
    pub fn disco_info(&self) -> Element {
        let mut query = Element::new("query", ns::DISCO_INFO).with_child(
            Element::new("identity", ns::DISCO_INFO)
                .with_attr("category", "conference")
                .with_attr("type", "text")
                .with_attr(
                    "name",
                    if self.config.name.is_empty() {
                        self.jid.node().map(|n| n.to_string()).unwrap_or_default()
                    } else {
                        self.config.name.clone()
                    },
                ),
        );
        let mut features = vec![MUC, ns::DISCO_INFO, "urn:xmpp:ping"];
        if self.config.logging {
            features.push(super::archive::MAM);
        }
        features.extend(self.config.features());
        for feature in features {
            query.push_child(Element::new("feature", ns::DISCO_INFO).with_attr("var", feature));
        }
        let mut form = crate::pubsub::form::FormBuilder::new(
            "result",
            "http://jabber.org/protocol/muc#roominfo",
        );
        form.field(
            "muc#roominfo_description",
            "text-single",
            Some("Description"),
            &[&self.config.description],
        );
        form.field(
            "muc#roominfo_occupants",
            "text-single",
            Some("Occupants"),
            &[&self.occupants.len().to_string()],
        );
        form.field(
            "muc#roominfo_subject",
            "text-single",
            Some("Subject"),
            &[&self.subject.0],
        );
        query.push_child(form.build());
        query
    }

    /// Disco#items on the room: its occupants' room JIDs when it is public
    /// (XEP-0045 6.5), nothing otherwise.
    pub fn disco_items(&self) -> Element {
        let mut query = Element::new("query", ns::DISCO_ITEMS);
        if self.config.public {
            for occupant in &self.occupants {
                query.push_child(
                    Element::new("item", ns::DISCO_ITEMS)
                        .with_attr("jid", self.nick_jid(&occupant.nick).as_str()),
                );
            }
        }
        query
    }
}

/// The children of a presence the room repeats to others: its own
/// protocol elements are dropped (the room writes its `<x/>`).
fn presence_children(presence: &Element) -> Vec<Element> {
    presence
        .children()
        .filter(|c| {
            !(c.ns() == MUC || c.ns() == MUC_USER || c.ns() == OCCUPANT_ID || c.ns() == ns::STANZAS)
        })
        .cloned()
        .collect()
}

/// XEP-0045 7.13: the form of a voice request.
const VOICE_REQUEST: &str = "http://jabber.org/protocol/muc#request";

fn bad_request(text: &str) -> StanzaError {
    StanzaError::new(Condition::BadRequest).with_text(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_occupants: 10,
            max_subject_chars: 20,
            history_size: 5,
            messages_per_second: 1.0,
            message_burst: 2.0,
        }
    }

    fn jid(s: &str) -> FullJid {
        FullJid::new(s).unwrap()
    }

    fn presence() -> Element {
        Element::new("presence", ns::CLIENT).with_child(Element::new("x", MUC))
    }

    fn codes(stanza: &Element) -> Vec<String> {
        stanza
            .child("x", MUC_USER)
            .map(|x| {
                x.children()
                    .filter(|c| c.name() == "status")
                    .filter_map(|c| c.attr("code").map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn room() -> Room {
        let mut room = Room::new(
            BareJid::new("tea@conference.example.com").unwrap(),
            RoomConfig::default(),
            5,
            false,
            "salt",
        );
        room.set_owner(BareJid::new("owner@example.com").unwrap());
        room
    }

    fn message(body: &str) -> Element {
        Element::new("message", ns::CLIENT)
            .with_attr("type", "groupchat")
            .with_child(Element::new("body", ns::CLIENT).with_text(body))
    }

    #[test]
    fn the_creator_gets_110_and_201_then_the_subject() {
        let mut room = room();
        let owner = jid("owner@example.com/a");
        let out = room
            .join(&owner, "boss", &presence(), true, &limits(), 0)
            .unwrap();
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(codes(&out[0].stanza), ["110", "201"]);
        assert!(out[1].stanza.child("subject", ns::CLIENT).is_some());
    }

    #[test]
    fn nick_conflicts_bans_and_passwords_are_refused() {
        let mut room = room();
        room.join(
            &jid("owner@example.com/a"),
            "boss",
            &presence(),
            false,
            &limits(),
            0,
        )
        .unwrap();
        let error = room
            .join(
                &jid("eve@example.com/x"),
                "boss",
                &presence(),
                false,
                &limits(),
                0,
            )
            .unwrap_err();
        assert_eq!(error.condition, Condition::Conflict);
        room.affiliations.insert(
            BareJid::new("eve@example.com").unwrap(),
            Affiliation::Outcast,
        );
        let error = room
            .join(
                &jid("eve@example.com/x"),
                "eve",
                &presence(),
                false,
                &limits(),
                0,
            )
            .unwrap_err();
        assert_eq!(error.condition, Condition::Forbidden);
        room.config.password = "pw".into();
        let error = room
            .join(
                &jid("bob@example.com/x"),
                "bob",
                &presence(),
                false,
                &limits(),
                0,
            )
            .unwrap_err();
        assert_eq!(error.condition, Condition::NotAuthorized);
    }

    #[test]
    fn a_flooding_occupant_is_refused_once_its_burst_is_spent() {
        let mut room = room();
        let owner = jid("owner@example.com/a");
        room.join(&owner, "boss", &presence(), false, &limits(), 0)
            .unwrap();
        assert!(room.groupchat(&owner, &message("1"), &limits(), 0).is_ok());
        assert!(room.groupchat(&owner, &message("2"), &limits(), 0).is_ok());
        let error = room
            .groupchat(&owner, &message("3"), &limits(), 0)
            .unwrap_err();
        assert_eq!(error.condition, Condition::PolicyViolation);
        assert_eq!(error.kind, ErrorType::Wait);
        // A second later one token is back.
        assert!(
            room.groupchat(&owner, &message("4"), &limits(), 1000)
                .is_ok()
        );
    }

    #[test]
    fn a_kick_tells_everyone_with_307_and_removes_the_occupant() {
        let mut room = room();
        let owner = jid("owner@example.com/a");
        let bob = jid("bob@example.com/b");
        room.join(&owner, "boss", &presence(), false, &limits(), 0)
            .unwrap();
        room.join(&bob, "bob", &presence(), false, &limits(), 0)
            .unwrap();
        let query = Element::new("query", MUC_ADMIN).with_child(
            Element::new("item", MUC_ADMIN)
                .with_attr("nick", "bob")
                .with_attr("role", "none"),
        );
        let (out, changed) = room.admin_set(&owner, &query).unwrap();
        assert!(!changed);
        assert_eq!(room.occupant_count(), 1);
        let to_bob = out.iter().find(|o| o.to == bob.clone()).unwrap();
        assert_eq!(codes(&to_bob.stanza), ["110", "307"]);
        // Bob cannot kick back: he is no moderator, and no occupant now.
        let error = room.admin_set(&bob, &query).unwrap_err();
        assert_eq!(error.condition, Condition::Forbidden);
    }

    #[test]
    fn the_last_owner_stays() {
        let mut room = room();
        let owner = jid("owner@example.com/a");
        let query = Element::new("query", MUC_ADMIN).with_child(
            Element::new("item", MUC_ADMIN)
                .with_attr("jid", "owner@example.com")
                .with_attr("affiliation", "member"),
        );
        assert_eq!(
            room.admin_set(&owner, &query).unwrap_err().condition,
            Condition::Conflict
        );
    }

    #[test]
    fn a_room_handed_over_keeps_its_occupants_history_and_affiliations() {
        let mut room = room();
        let owner = jid("owner@example.com/a");
        room.join(&owner, "boss", &presence(), false, &limits(), 0)
            .unwrap();
        room.groupchat(&owner, &message("kept"), &limits(), 0)
            .unwrap();
        let handover = room.hand_over();
        assert!(room.is_empty());
        let mut next = Room::new(room.jid.clone(), RoomConfig::default(), 5, false, "salt");
        next.take_over(&handover, &limits(), 0);
        assert_eq!(next.occupant_count(), 1);
        assert_eq!(
            next.affiliation(&BareJid::new("owner@example.com").unwrap()),
            Affiliation::Owner
        );
        assert_eq!(next.history.len(), 1);
        assert_eq!(
            next.occupant(&owner).unwrap().id,
            room.occupant_id(&owner.to_bare())
        );
    }

    #[test]
    fn lost_occupants_leave_with_333() {
        let mut room = room();
        let owner = jid("owner@example.com/a");
        let bob = jid("bob@example.com/b");
        room.join(&owner, "boss", &presence(), false, &limits(), 0)
            .unwrap();
        room.join(&bob, "bob", &presence(), false, &limits(), 0)
            .unwrap();
        let out = room.remove_lost(&HashSet::from([bob.clone()]));
        assert_eq!(out.len(), 1);
        assert_eq!(codes(&out[0].stanza), ["333"]);
        assert_eq!(out[0].about.as_ref(), Some(&bob));
    }
}
