//! XEP-0352 client state indication: while a client says it is inactive,
//! what it need not see at once (presence, messages without a body such
//! as chat states and PEP events) waits here, and goes out before the
//! next urgent stanza (a message with a body, an iq, an error), when the
//! client is active again, or when `max_held` stanzas wait.
//!
//! The stanzas are held in the `deliver` hook, on the member holding the
//! session, after every other module had its say (the module is last in
//! the catalogue); releasing them queues them to the session's mailbox in
//! their order, ahead of what caused the release. Of an entity's
//! available and unavailable presence only the newest is kept. Nothing is
//! dropped: a session that ends or moves gets what was held first.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Deserialize;
use starling_core::xml::{Element, ns};

use super::session_map::SessionMap;
use super::{
    Delivery, Hook, Metric, Module, ModuleConfigError, Options, Registration, StreamFeature,
};
use crate::server::Server;
use crate::session::LocalSession;

pub const CSI: &str = "urn:xmpp:csi:0";

/// `[modules.csi]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CsiConfig {
    /// Stanzas held for one inactive session before all are released.
    pub max_held: usize,
}

impl Default for CsiConfig {
    fn default() -> Self {
        CsiConfig { max_held: 100 }
    }
}

type Held = Arc<Mutex<Vec<Element>>>;

pub struct CsiModule {
    config: CsiConfig,
    /// Inactive sessions here and what waits for each.
    inactive: SessionMap<Held>,
    held: AtomicU64,
    released: AtomicU64,
    /// Presence replaced by a newer one from the same entity while held.
    superseded: AtomicU64,
    /// Held stanzas a closing session's mailbox no longer took (counted
    /// and logged: the hook has no route for them).
    lost: AtomicU64,
}

impl CsiModule {
    pub fn new(options: Options) -> Result<CsiModule, ModuleConfigError> {
        let config: CsiConfig = options.parse()?;
        Ok(CsiModule {
            config,
            inactive: SessionMap::default(),
            held: AtomicU64::new(0),
            released: AtomicU64::new(0),
            superseded: AtomicU64::new(0),
            lost: AtomicU64::new(0),
        })
    }

    /// `<inactive/>` or `<active/>` from the session's client.
    pub fn set_active(&self, session: &LocalSession, active: bool) {
        if active {
            if let Some(held) = self.inactive.remove(&session.jid) {
                self.release(session, &held);
            }
        } else if self.inactive.get(&session.jid).is_none() {
            self.inactive.set(&session.jid, Held::default());
        }
    }

    /// Queues what was held to the session, oldest first.
    fn release(&self, session: &LocalSession, held: &Held) {
        let stanzas = std::mem::take(&mut *held.lock().unwrap_or_else(|e| e.into_inner()));
        for stanza in stanzas {
            self.released.fetch_add(1, Ordering::Relaxed);
            if let Err(error) = session.send(Box::new(stanza)) {
                // Only a session that is closing refuses.
                self.lost.fetch_add(1, Ordering::Relaxed);
                let stanza = error.into_stanza();
                tracing::warn!(jid = %session.jid, name = stanza.name(), "held stanza not delivered: the session is closing");
            }
        }
    }

    /// Holds `stanza` if the session is inactive and it can wait.
    fn hold(&self, session: &LocalSession, stanza: &Element) -> Delivery {
        let Some(held) = self.inactive.get(&session.jid) else {
            return Delivery::Deliver;
        };
        if is_urgent(stanza) {
            self.release(session, &held);
            return Delivery::Deliver;
        }
        let full = {
            let mut waiting = held.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(from) = replaceable_presence(stanza) {
                let before = waiting.len();
                waiting.retain(|old| replaceable_presence(old) != Some(from));
                let replaced = (before - waiting.len()) as u64;
                self.superseded.fetch_add(replaced, Ordering::Relaxed);
            }
            waiting.push(stanza.clone());
            waiting.len() >= self.config.max_held
        };
        self.held.fetch_add(1, Ordering::Relaxed);
        if full {
            self.release(session, &held);
        }
        Delivery::Withhold
    }
}

/// What an inactive client still gets at once.
fn is_urgent(stanza: &Element) -> bool {
    match stanza.name() {
        "message" => {
            stanza.attr("type") == Some("error")
                || stanza.has_child("body", ns::CLIENT)
                // A carbon copy of a chat (the body is inside).
                || stanza.children().any(|child| child.ns() == super::carbons::CARBONS)
        }
        "presence" => false,
        _ => true,
    }
}

/// An entity's available or unavailable presence: a newer one replaces it.
fn replaceable_presence(stanza: &Element) -> Option<&str> {
    if stanza.name() != "presence" {
        return None;
    }
    match stanza.attr("type") {
        None | Some("unavailable") => stanza.attr("from"),
        Some(_) => None,
    }
}

impl Module for CsiModule {
    fn name(&self) -> &'static str {
        "csi"
    }

    fn registration(&self) -> Registration {
        Registration {
            hooks: vec![Hook::Deliver, Hook::SessionClosed, Hook::SessionMoved],
            stream_features: vec![StreamFeature {
                name: "csi",
                ns: CSI,
            }],
            ..Registration::default()
        }
    }

    fn deliver(&self, _server: &Server, session: &LocalSession, stanza: &Element) -> Delivery {
        self.hold(session, stanza)
    }

    /// The held stanzas go to the mailbox, which moves with the session.
    /// The same when the session closes (the default `session_closed`):
    /// the mailbox is still open, and what was held is routed with the
    /// rest of what the session never delivered.
    fn export_session(&self, _server: &Server, session: &LocalSession) -> Option<String> {
        let held = self.inactive.remove(&session.jid)?;
        self.release(session, &held);
        Some("inactive".to_owned())
    }

    fn restore_session(&self, _server: &Server, session: &Arc<LocalSession>, state: &str) {
        if state == "inactive" {
            self.set_active(session, false);
        }
    }

    fn client_state(&self) -> Option<&CsiModule> {
        Some(self)
    }

    fn metrics(&self) -> Vec<Metric> {
        vec![
            Metric::counter(
                "starling_csi_held_total",
                "Stanzas held back for inactive clients (XEP-0352).",
                &self.held,
            ),
            Metric::counter(
                "starling_csi_released_total",
                "Held stanzas released to their session.",
                &self.released,
            ),
            Metric::counter(
                "starling_csi_superseded_total",
                "Held presence replaced by a newer one from the same entity.",
                &self.superseded,
            ),
            Metric::counter(
                "starling_csi_lost_total",
                "Held stanzas a closing session no longer took.",
                &self.lost,
            ),
            Metric::gauge(
                "starling_csi_inactive_sessions",
                "Sessions on this member whose client said it is inactive.",
                self.inactive.len() as u64,
            ),
        ]
    }
}

/// The sessions' held stanzas by JID, for tests.
#[cfg(test)]
fn held_of(module: &CsiModule, jid: &starling_core::jid::FullJid) -> usize {
    module
        .inactive
        .get(jid)
        .map_or(0, |held| held.lock().unwrap().len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use starling_core::jid::FullJid;

    fn parse(xml: &str) -> Element {
        crate::stream::parse_element(xml.as_bytes()).unwrap()
    }

    #[test]
    fn the_default_config_documents_the_defaults() {
        let documented: CsiConfig = super::super::registry::documented("csi");
        assert_eq!(documented, CsiConfig::default());
    }

    #[test]
    fn urgency_follows_the_body() {
        assert!(is_urgent(&parse("<message><body>hi</body></message>")));
        assert!(is_urgent(&parse("<iq type='get' id='1'/>")));
        assert!(is_urgent(&parse("<message type='error'/>")));
        assert!(!is_urgent(&parse(
            "<message><composing xmlns='http://jabber.org/protocol/chatstates'/></message>"
        )));
        assert!(!is_urgent(&parse("<presence from='a@b/c'/>")));
    }

    #[test]
    fn presence_is_replaced_by_a_newer_one_and_all_is_released_in_order() {
        let module = CsiModule::new(Options::for_test("csi", toml::Table::new())).unwrap();
        let jid = FullJid::new("a@example.com/r").unwrap();
        let session = LocalSession::new(1, jid.clone(), 16);
        module.set_active(&session, false);
        for xml in [
            "<presence from='b@example.com/x'/>",
            "<presence from='c@example.com/y'/>",
            "<presence from='b@example.com/x' type='unavailable'/>",
            "<presence from='b@example.com' type='subscribe'/>",
        ] {
            assert_eq!(module.hold(&session, &parse(xml)), Delivery::Withhold);
        }
        assert_eq!(held_of(&module, &jid), 3);
        let urgent = parse("<message><body>hi</body></message>");
        assert_eq!(module.hold(&session, &urgent), Delivery::Deliver);
        let mut queued = Vec::new();
        session.take_queued(16, &mut queued);
        let types: Vec<_> = queued
            .iter()
            .map(|stanza| stanza.attr("type").unwrap_or("available").to_owned())
            .collect();
        assert_eq!(types, ["available", "unavailable", "subscribe"]);
        module.set_active(&session, true);
        assert_eq!(
            module.hold(&session, &parse("<presence/>")),
            Delivery::Deliver
        );
    }
}
