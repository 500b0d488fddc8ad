//! XEP-0045 multi-user chat on `conference.<domain>`, with XEP-0421
//! occupant ids and XEP-0410 self-ping.
//!
//! Each room lives on one member, its host, chosen by rendezvous hashing
//! over the members that are up or suspect (`hosting.rs`); a stanza to a room is
//! forwarded there from the sender's member. The room's rules are pure
//! logic (`room/`, one file per job) that returns the stanzas to send; `relay.rs` sends
//! them, one relay per member with recipients, and keeps this member's
//! records of its own occupants; `failover.rs` rebuilds rooms whose host
//! died, `handover.rs` hands rooms to a member that came up. Persistent
//! rooms are in the store (`muc_rooms`).
//!
//! ```text
//!  client ─▶ router ─▶ host_stanza (sender's member) ──hash──▶ host member
//!  host: Room::join / groupchat / admin_set ... ─▶ Vec<Out> ─▶ relay::send
//!        ─▶ local sessions, and one relay per other member with occupants
//! ```

pub mod affiliation;
mod archive;
mod backup;
pub mod config_form;
mod failover;
mod handover;
pub mod history;
pub mod hosting;
mod moderation;
mod records;
mod relay;
pub mod room;
mod service;

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde::Deserialize;
use starling_core::cluster::{Envelope, StanzaKind};
use starling_core::config::Config;
use starling_core::jid::{BareJid, FullJid, Jid};
use starling_core::xml::{Element, ns};

use self::config_form::RoomConfig;
use self::records::LocalRecords;
use self::room::{Limits, Room};
use super::{Disco, Hook, Metric, Module, ModuleConfigError, Options, Registration};
use crate::BoxFuture;
use crate::router::Routed;
use crate::server::Server;
use crate::stanza::Stanza;
use crate::storage::{StorageError, Store};

pub const MUC: &str = "http://jabber.org/protocol/muc";
pub const MUC_USER: &str = "http://jabber.org/protocol/muc#user";
pub const MUC_ADMIN: &str = "http://jabber.org/protocol/muc#admin";
pub const MUC_OWNER: &str = "http://jabber.org/protocol/muc#owner";
pub const OCCUPANT_ID: &str = "urn:xmpp:occupant-id:0";
/// Members' own traffic about rooms: relays and rejoins. Accepted only
/// from a peer, never from a client.
pub const RELAY: &str = "urn:xmpp:starling:muc:relay";

/// Who may create rooms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Creators {
    /// Any account of this server.
    Users,
    /// Server administrators only.
    Admins,
}

/// `[modules.muc]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MucConfig {
    /// The service's domain; empty: `conference.<domain>`.
    pub host: String,
    pub room_creators: Creators,
    /// Rooms the service holds at once (live and stored).
    pub max_rooms: u32,
    /// Occupants of one room, whatever its configuration says.
    pub max_occupants: u32,
    /// Messages a room keeps for new occupants.
    pub history_size: usize,
    pub max_subject_chars: usize,
    pub max_nick_chars: usize,
    /// Messages an occupant may send per second, on average.
    pub messages_per_second: f64,
    /// Messages an occupant may send at once before the rate applies.
    pub message_burst: u32,
    /// A new room stays locked until its owner configures it (XEP-0045
    /// 10.1); off, it opens at once (an instant room).
    pub lock_new_rooms: bool,
    /// The configuration new rooms get.
    pub default_room: RoomConfig,
}

impl Default for MucConfig {
    fn default() -> Self {
        MucConfig {
            host: String::new(),
            room_creators: Creators::Users,
            max_rooms: 10_000,
            max_occupants: 500,
            history_size: 20,
            max_subject_chars: 1024,
            max_nick_chars: 64,
            messages_per_second: 5.0,
            message_burst: 10,
            lock_new_rooms: true,
            default_room: RoomConfig::default(),
        }
    }
}

/// A room as the module holds it: its state behind a lock that also
/// orders its broadcasts.
type RoomCell = Arc<tokio::sync::Mutex<Room>>;

pub struct Muc {
    host: String,
    config: MucConfig,
    limits: Limits,
    /// The rooms this member hosts.
    rooms: Mutex<HashMap<BareJid, RoomCell>>,
    /// This member's sessions in rooms, wherever hosted (`records.rs`).
    records: LocalRecords,
    /// Remote occupants of rooms, kept for their host and sent by it (`backup.rs`).
    backups: backup::Backups,
    /// Makes occupant ids unguessable from outside the deployment.
    salt: String,
    relays_sent: AtomicU64,
    relays_received: AtomicU64,
    forwarded: AtomicU64,
    messages: AtomicU64,
    rejoined: AtomicU64,
    /// Room stanzas a dying link gave back (see `service::returned`).
    returned: AtomicU64,
    /// The node is shutting down: its rooms go to other members.
    stopping: std::sync::atomic::AtomicBool,
}

impl Muc {
    /// A service-to-service message carrying `payload` (a relay, a rejoin,
    /// a handover) to another member: from this service to itself there,
    /// one crossing (the receiver only acts on it, never forwards it).
    pub(super) fn member_envelope(&self, payload: Element) -> Envelope {
        let host = Jid::new(&self.host).expect("the host is a domain");
        let message = Element::new("message", ns::CLIENT)
            .with_attr("from", &self.host)
            .with_attr("to", &self.host)
            .with_child(payload);
        Envelope {
            from: host.clone(),
            to: host,
            kind: StanzaKind::Message,
            xml: Bytes::from(message.to_bytes()),
            hops: 1,
        }
    }

    pub fn new(config: &Config, options: Options) -> Result<Muc, ModuleConfigError> {
        let muc: MucConfig = options.parse()?;
        let invalid = |message: &str| ModuleConfigError::Invalid {
            module: "muc",
            message: message.to_owned(),
        };
        if muc.messages_per_second <= 0.0 || muc.message_burst == 0 {
            return Err(invalid(
                "messages_per_second and message_burst must be above 0",
            ));
        }
        if muc.max_nick_chars == 0 || muc.max_occupants == 0 {
            return Err(invalid("max_nick_chars and max_occupants must be above 0"));
        }
        let domain = Jid::new(&config.server.domain)
            .map(|jid| jid.domain().to_string())
            .unwrap_or_else(|_| config.server.domain.clone());
        let host = if muc.host.is_empty() {
            format!("conference.{domain}")
        } else {
            Jid::new(&muc.host)
                .ok()
                .filter(|jid| jid.node().is_none() && jid.resource().is_none())
                .map(|jid| jid.domain().to_string())
                .ok_or_else(|| invalid("host must be a domain name"))?
        };
        let limits = Limits {
            max_occupants: muc.max_occupants,
            max_subject_chars: muc.max_subject_chars,
            history_size: muc.history_size,
            messages_per_second: muc.messages_per_second,
            message_burst: f64::from(muc.message_burst),
        };
        // Members share the cluster secret; a single node its domain.
        let salt = format!("{}\0{}", config.cluster.secret, domain);
        Ok(Muc {
            host,
            config: muc,
            limits,
            rooms: Mutex::new(HashMap::new()),
            records: LocalRecords::default(),
            backups: backup::Backups::default(),
            salt,
            relays_sent: AtomicU64::new(0),
            relays_received: AtomicU64::new(0),
            forwarded: AtomicU64::new(0),
            messages: AtomicU64::new(0),
            rejoined: AtomicU64::new(0),
            returned: AtomicU64::new(0),
            stopping: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The members rooms may be hosted by: those up and those merely
    /// suspect, without this one once it is stopping. A room moves only
    /// when its host is declared down (or leaves): a host slow to answer
    /// heartbeats on a busy machine is suspect for a moment, and while it
    /// is, stanzas for its rooms wait for it (the service's `forward`)
    /// rather than go to a member that has no such room and answers
    /// item-not-found.
    fn candidates(&self, server: &Server) -> Vec<starling_core::cluster::NodeId> {
        use starling_core::cluster::PeerState;
        let mut up = server
            .cluster
            .members_in(&[PeerState::Up, PeerState::Suspect]);
        if self.stopping.load(std::sync::atomic::Ordering::Relaxed) {
            let me = server.cluster.node_id();
            up.retain(|node| *node != me);
        }
        up
    }

    fn room(&self, jid: &BareJid) -> Option<RoomCell> {
        lock(&self.rooms).get(jid).cloned()
    }

    fn remove_room(&self, jid: &BareJid) {
        lock(&self.rooms).remove(jid);
    }

    fn room_count(&self) -> usize {
        lock(&self.rooms).len()
    }

    fn new_room(&self, jid: BareJid, locked: bool) -> Room {
        Room::new(
            jid,
            self.config.default_room.clone(),
            self.limits.history_size,
            locked,
            &self.salt,
        )
    }

    /// The hosted room, or the stored one loaded (a persistent room after a
    /// restart, or moved here from a member that died).
    async fn load(&self, server: &Server, jid: &BareJid) -> Result<Option<RoomCell>, StorageError> {
        if let Some(room) = self.room(jid) {
            return Ok(Some(room));
        }
        let Some(stored) = server.store.muc_load_room(jid.as_str()).await? else {
            return Ok(None);
        };
        let room = service::restore(self, jid.clone(), stored);
        let mut rooms = lock(&self.rooms);
        // Another task may have loaded it meanwhile: keep the first.
        Ok(Some(
            rooms
                .entry(jid.clone())
                .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(room)))
                .clone(),
        ))
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Module for Muc {
    fn name(&self) -> &'static str {
        "muc"
    }

    fn registration(&self) -> Registration {
        Registration {
            hosts: vec![self.host.clone()],
            hooks: vec![
                Hook::PeerSessions,
                Hook::MemberUp,
                Hook::Stopping,
                Hook::UserDeleted,
            ],
            // XEP-0045 6.1: the service is found among the server's items.
            server_disco: vec![Disco::Item {
                jid: self.host.clone(),
                name: "Chatrooms",
            }],
            ..Registration::default()
        }
    }

    fn host_stanza<'a>(
        &'a self,
        server: &'a Server,
        stanza: Stanza,
        returned: bool,
    ) -> BoxFuture<'a, Routed> {
        Box::pin(service::handle(self, server, stanza, returned))
    }

    fn peer_sessions<'a>(
        &'a self,
        server: &'a Server,
        sessions: &'a [FullJid],
        regained_from: Option<starling_core::cluster::NodeId>,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if regained_from.is_none() {
                failover::sessions_lost(self, server, sessions).await;
            }
        })
    }

    fn member_up<'a>(
        &'a self,
        server: &'a Server,
        node: starling_core::cluster::NodeId,
    ) -> BoxFuture<'a, ()> {
        Box::pin(handover::member_up(self, server, node))
    }

    fn stopping<'a>(&'a self, server: &'a Server) -> BoxFuture<'a, ()> {
        self.stopping
            .store(true, std::sync::atomic::Ordering::Relaxed);
        Box::pin(handover::stopping(self, server))
    }

    fn metrics(&self) -> Vec<Metric> {
        vec![
            Metric::counter(
                "starling_muc_relays_sent_total",
                "Room broadcasts sent to another member (one per member, not per occupant)",
                &self.relays_sent,
            ),
            Metric::counter(
                "starling_muc_relays_received_total",
                "Room broadcasts received from the member hosting the room",
                &self.relays_received,
            ),
            Metric::counter(
                "starling_muc_forwarded_total",
                "Stanzas to a room forwarded to the member hosting it",
                &self.forwarded,
            ),
            Metric::counter(
                "starling_muc_messages_total",
                "Groupchat messages broadcast by rooms hosted here",
                &self.messages,
            ),
            Metric::counter(
                "starling_muc_rejoined_total",
                "Occupants moved to this member after their room's host died",
                &self.rejoined,
            ),
            Metric::counter(
                "starling_muc_returned_total",
                "Room stanzas a dying link gave back unacknowledged (not repeated)",
                &self.returned,
            ),
            Metric::gauge(
                "starling_muc_rooms",
                "Rooms hosted by this member",
                self.room_count() as u64,
            ),
        ]
    }

    fn user_deleted<'a>(
        &'a self,
        store: &'a Store,
        user: &'a BareJid,
    ) -> BoxFuture<'a, Result<(), StorageError>> {
        Box::pin(async move { store.muc_delete_user(user.as_str()).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_config_documents_every_key() {
        assert_eq!(
            super::super::registry::documented::<MucConfig>("muc"),
            MucConfig::default()
        );
    }

    #[test]
    fn the_service_is_conference_of_the_domain_unless_configured() {
        let config = Config::defaults();
        let muc = Muc::new(&config, Options::for_test("muc", toml::Table::new())).unwrap();
        assert_eq!(muc.host, "conference.localhost");
        let mut table = toml::Table::new();
        table.insert("host".into(), toml::Value::String("chat.localhost".into()));
        let muc = Muc::new(&config, Options::for_test("muc", table)).unwrap();
        assert_eq!(muc.host, "chat.localhost");
        let mut table = toml::Table::new();
        table.insert("hots".into(), toml::Value::String("x".into()));
        assert!(Muc::new(&config, Options::for_test("muc", table)).is_err());
    }
}
