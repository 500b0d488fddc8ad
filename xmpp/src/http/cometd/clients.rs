//! The Bayeux clients of this node: who they are, what they subscribed
//! to, their queue, and when they were last heard from.
//!
//! A client lives from its handshake until it disconnects, falls too far
//! behind, or has not connected for `max_interval` (then [`Clients::expire`]
//! removes it). Client ids are 128 random bits: knowing one is the only
//! proof of being that client. Each client's state sits behind its own
//! short lock, never held across an await.
//!
//! The registry is bounded ([`Capacity`]): in all, and per source address,
//! so a flood of handshakes cannot fill memory until `max_interval`
//! clears it; a handshake beyond either bound creates nothing.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::outbox::{Event, Outbox, Overflow};

pub(crate) type ClientId = Arc<str>;

/// The connection number of the long-polling transport (WebSockets count from 1).
pub(crate) const LONG_POLL: u64 = 0;

/// Who a client acts as on the pub/sub service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Identity {
    /// An XMPP account (bare JID) that proved its password in the handshake.
    User(String),
    Anonymous,
}

/// Why a client is gone: the answer its next connect gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Removal {
    /// It said goodbye: no reconnect.
    Disconnected,
    /// Expired or too slow: it must handshake again.
    Dropped,
}

pub(crate) struct Client {
    pub(crate) id: ClientId,
    pub(crate) identity: Identity,
    /// The address it handshook from (counted against its per-address bound).
    ip: IpAddr,
    state: Mutex<State>,
    /// Wakes the connection waiting to write this client's messages.
    pub(crate) wake: Notify,
}

pub(crate) struct State {
    pub(crate) outbox: Outbox,
    pub(crate) subscriptions: HashSet<String>,
    /// Connects in progress (held or being answered): while one is, the
    /// client is connected and never expires.
    polling: usize,
    last_seen: Instant,
    /// The connection the last connect came on (0: long-polling).
    connection: u64,
    /// Counts connects; a held connect that sees a newer one gives way.
    pub(crate) connect_seq: u64,
    pub(crate) removed: Option<Removal>,
}

impl Client {
    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock leaves plain data behind, still usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues `event` and wakes the connection that writes it.
    pub(crate) fn deliver(&self, event: Event) -> Result<(), Overflow> {
        let mut state = self.state();
        if state.removed.is_some() {
            return Ok(());
        }
        state.outbox.push(event)?;
        drop(state);
        self.wake.notify_one();
        Ok(())
    }

    /// A connect arrives on `connection`: applies its ack, and returns the
    /// connect's sequence number (see [`Client::end_connect`]).
    pub(crate) fn begin_connect(&self, connection: u64, ack: Option<u64>) -> u64 {
        let mut state = self.state();
        if let Some(batch) = ack {
            state.outbox.ack(batch);
        }
        // What went out on another connection may be lost with it; and a
        // long-poll connect comes only after the previous reply, so what that
        // reply carried and is still unacknowledged never arrived.
        if state.connection != connection || connection == LONG_POLL {
            state.outbox.resend();
            state.connection = connection;
        }
        state.polling += 1;
        state.connect_seq += 1;
        let seq = state.connect_seq;
        drop(state);
        // A connect held elsewhere gives way to this one.
        self.wake.notify_one();
        seq
    }

    /// The connect is answered: the client has `max_interval` from now to
    /// come back.
    pub(crate) fn end_connect(&self) {
        let mut state = self.state();
        state.polling = state.polling.saturating_sub(1);
        state.last_seen = Instant::now();
    }

    pub(crate) fn removed(&self) -> Option<Removal> {
        self.state().removed
    }

    /// The server is busy writing to this client (a WebSocket write the
    /// client's reading paces): it counts as a connect in progress, so time
    /// the server spends waiting on the socket is not time the client went
    /// without connecting. Its max_interval starts again when the guard drops.
    pub(crate) fn writing(self: &Arc<Self>) -> Writing {
        self.state().polling += 1;
        Writing(self.clone())
    }
}

/// See [`Client::writing`].
pub(crate) struct Writing(Arc<Client>);

impl Drop for Writing {
    fn drop(&mut self) {
        self.0.end_connect();
    }
}

/// How many clients the registry holds at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Capacity {
    pub(crate) total: usize,
    pub(crate) per_ip: usize,
}

/// Why a handshake found no room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Full {
    /// This node holds `Capacity::total` clients.
    Node,
    /// The source address holds `Capacity::per_ip` clients.
    Address,
}

#[derive(Default)]
struct Registry {
    clients: HashMap<ClientId, Arc<Client>>,
    /// Clients per source address (addresses with none are not kept).
    per_ip: HashMap<IpAddr, usize>,
}

/// The registry of this node's clients.
pub(crate) struct Clients {
    registry: Mutex<Registry>,
    max_interval: Duration,
    queue_limit: usize,
    capacity: Capacity,
}

impl Clients {
    pub(crate) fn new(max_interval: Duration, queue_limit: usize, capacity: Capacity) -> Clients {
        Clients {
            registry: Mutex::default(),
            max_interval,
            queue_limit,
            capacity,
        }
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether a client from `ip` would fit now (a handshake checks before
    /// its password check; [`Clients::create`] decides).
    pub(crate) fn has_room(&self, ip: IpAddr) -> Result<(), Full> {
        let registry = self.registry();
        self.room_in(&registry, ip).map(|_| ())
    }

    /// Clients from `ip` now, or why there is no room for another.
    fn room_in(&self, registry: &Registry, ip: IpAddr) -> Result<usize, Full> {
        if registry.clients.len() >= self.capacity.total {
            return Err(Full::Node);
        }
        let from_ip = registry.per_ip.get(&ip).copied().unwrap_or(0);
        if from_ip >= self.capacity.per_ip {
            return Err(Full::Address);
        }
        Ok(from_ip)
    }

    /// A new client from `ip`, unless this node or that address is full.
    pub(crate) fn create(
        &self,
        identity: Identity,
        acks: bool,
        ip: IpAddr,
    ) -> Result<Arc<Client>, Full> {
        let mut registry = self.registry();
        let from_ip = self.room_in(&registry, ip)?;
        let client = Arc::new(Client {
            id: new_client_id(),
            identity,
            ip,
            state: Mutex::new(State {
                outbox: Outbox::new(acks, self.queue_limit),
                subscriptions: HashSet::new(),
                polling: 0,
                last_seen: Instant::now(),
                connection: 0,
                connect_seq: 0,
                removed: None,
            }),
            wake: Notify::new(),
        });
        registry.clients.insert(client.id.clone(), client.clone());
        registry.per_ip.insert(ip, from_ip + 1);
        Ok(client)
    }

    pub(crate) fn get(&self, id: &str) -> Option<Arc<Client>> {
        self.registry().clients.get(id).cloned()
    }

    pub(crate) fn len(&self) -> usize {
        self.registry().clients.len()
    }

    /// Clients from `ip` now.
    #[cfg(test)]
    pub(crate) fn count_from(&self, ip: IpAddr) -> usize {
        self.registry().per_ip.get(&ip).copied().unwrap_or(0)
    }

    /// Takes the client out of the registry and marks it removed (a held
    /// connect wakes and answers). Returns its subscriptions to undo, or
    /// `None` when it was already gone.
    pub(crate) fn remove(&self, id: &str, why: Removal) -> Option<(Arc<Client>, Vec<String>)> {
        let client = {
            let mut registry = self.registry();
            let client = registry.clients.remove(id)?;
            if let Some(count) = registry.per_ip.get_mut(&client.ip) {
                *count -= 1;
                if *count == 0 {
                    registry.per_ip.remove(&client.ip);
                }
            }
            client
        };
        let mut state = client.state();
        state.removed = Some(why);
        let channels = state.subscriptions.drain().collect();
        drop(state);
        client.wake.notify_one();
        Some((client, channels))
    }

    /// Removes every client that has had no connect in progress for longer
    /// than `max_interval` as of `now`; returns them with their subscriptions.
    pub(crate) fn expire(&self, now: Instant) -> Vec<(Arc<Client>, Vec<String>)> {
        let stale: Vec<ClientId> = self
            .registry()
            .clients
            .values()
            .filter(|client| {
                let state = client.state();
                state.polling == 0 && now.duration_since(state.last_seen) > self.max_interval
            })
            .map(|client| client.id.clone())
            .collect();
        stale
            .iter()
            .filter_map(|id| self.remove(id, Removal::Dropped))
            .collect()
    }
}

/// 128 random bits, hex: unguessable, and short enough for every request.
fn new_client_id() -> ClientId {
    use rand::RngExt;
    let bytes: [u8; 16] = rand::rng().random();
    let mut id = String::with_capacity(32);
    for byte in bytes {
        id.push_str(&format!("{byte:02x}"));
    }
    Arc::from(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HERE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    fn clients() -> Clients {
        Clients::new(Duration::from_secs(10), 100, ROOMY)
    }

    const ROOMY: Capacity = Capacity {
        total: 10_000,
        per_ip: 10_000,
    };

    /// A client from 127.0.0.1 in a registry with room.
    fn client(clients: &Clients, identity: Identity, acks: bool) -> Arc<Client> {
        clients.create(identity, acks, HERE).expect("room")
    }

    #[test]
    fn client_ids_are_long_random_and_distinct() {
        let clients = clients();
        let ids: HashSet<ClientId> = (0..1000)
            .map(|_| client(&clients, Identity::Anonymous, false).id.clone())
            .collect();
        assert_eq!(ids.len(), 1000);
        assert!(ids.iter().all(|id| id.len() == 32));
        assert_eq!(clients.len(), 1000);
    }

    /// `expire` is given the time to judge by, so no clock needs to move.
    fn later(seconds: u64) -> Instant {
        Instant::now() + Duration::from_secs(seconds)
    }

    #[test]
    fn a_client_that_stops_connecting_expires_with_its_subscriptions() {
        let clients = clients();
        let quiet = client(&clients, Identity::Anonymous, false);
        quiet.state().subscriptions.insert("/pubsub/a".into());
        let busy = client(&clients, Identity::Anonymous, false);
        busy.begin_connect(0, None);
        assert!(clients.expire(later(9)).is_empty(), "within maxInterval");
        let expired = clients.expire(later(11));
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].0.id, quiet.id);
        assert_eq!(expired[0].1, ["/pubsub/a"]);
        assert_eq!(quiet.removed(), Some(Removal::Dropped));
        assert!(clients.get(&quiet.id).is_none());
        assert!(clients.get(&busy.id).is_some(), "its connect is held");
        assert!(
            clients.expire(later(3600)).is_empty(),
            "held connects never expire"
        );
        // Its maxInterval starts when the connect is answered.
        busy.end_connect();
        assert!(clients.expire(later(9)).is_empty());
        assert_eq!(clients.expire(later(11)).len(), 1);
        assert_eq!(clients.len(), 0);
    }

    #[test]
    fn a_client_being_written_to_does_not_expire_and_its_interval_restarts_after() {
        let clients = clients();
        let slow_reader = client(&clients, Identity::Anonymous, false);
        let writing = slow_reader.writing();
        assert!(
            clients.expire(later(3600)).is_empty(),
            "a write in progress"
        );
        drop(writing);
        assert!(
            clients.expire(later(9)).is_empty(),
            "counted from the write's end"
        );
        assert_eq!(clients.expire(later(11)).len(), 1);
    }

    #[test]
    fn a_connect_on_another_connection_resends_what_is_unacknowledged() {
        let clients = clients();
        let client = client(&clients, Identity::Anonymous, true);
        client.begin_connect(7, None);
        client.deliver(Arc::from("a")).unwrap();
        client.deliver(Arc::from("b")).unwrap();
        assert_eq!(client.state().outbox.take_unsent().len(), 2);
        client.end_connect();
        client.begin_connect(7, Some(0));
        assert!(!client.state().outbox.has_unsent(), "same connection");
        client.end_connect();
        client.begin_connect(8, Some(0));
        assert!(client.state().outbox.has_unsent(), "new connection");
        client.end_connect();
        // A long-poll reply carried both; the next connect acknowledges
        // nothing newer, so that reply was lost and both go out again.
        client.begin_connect(LONG_POLL, Some(0));
        let (events, batch) = client.state().outbox.take_for_reply();
        client.end_connect();
        assert_eq!(events.len(), 2);
        client.begin_connect(LONG_POLL, Some(0));
        assert!(client.state().outbox.has_unsent(), "lost reply");
        let (again, batch_again) = client.state().outbox.take_for_reply();
        client.end_connect();
        assert_eq!(again, events);
        assert!(batch_again > batch);
        client.begin_connect(LONG_POLL, batch_again);
        assert!(
            client.state().outbox.take_for_reply().0.is_empty(),
            "acknowledged"
        );
    }

    #[test]
    fn removal_wakes_and_is_remembered() {
        let clients = clients();
        let client = client(&clients, Identity::User("a@b".into()), false);
        let (_, channels) = clients.remove(&client.id, Removal::Disconnected).unwrap();
        assert!(channels.is_empty());
        assert_eq!(client.removed(), Some(Removal::Disconnected));
        assert!(clients.remove(&client.id, Removal::Disconnected).is_none());
        // Delivery to a removed client is a no-op, not a queue that grows.
        client.deliver(Arc::from("x")).unwrap();
        assert_eq!(client.state().outbox.len(), 0);
    }

    #[test]
    fn the_registry_is_bounded_in_all_and_per_address() {
        let clients = Clients::new(
            Duration::from_secs(10),
            100,
            Capacity {
                total: 3,
                per_ip: 2,
            },
        );
        let other: IpAddr = "10.0.0.7".parse().unwrap();
        let first = clients.create(Identity::Anonymous, false, HERE).unwrap();
        clients.create(Identity::Anonymous, false, HERE).unwrap();
        assert_eq!(
            clients.create(Identity::Anonymous, false, HERE).err(),
            Some(Full::Address)
        );
        clients.create(Identity::Anonymous, false, other).unwrap();
        assert_eq!(
            clients.create(Identity::Anonymous, false, other).err(),
            Some(Full::Node)
        );
        assert_eq!(clients.len(), 3, "refusals create nothing");
        assert_eq!(
            (clients.count_from(HERE), clients.count_from(other)),
            (2, 1)
        );
        // A client leaving (or expiring) makes room for its address again.
        clients.remove(&first.id, Removal::Disconnected).unwrap();
        assert_eq!(clients.count_from(HERE), 1);
        clients.create(Identity::Anonymous, false, HERE).unwrap();
        assert_eq!(clients.expire(later(11)).len(), 3);
        assert_eq!(
            (clients.count_from(HERE), clients.count_from(other)),
            (0, 0)
        );
    }
}
