//! Feature modules: everything the server does beyond routing is a module
//! that says what it handles, and the core calls it there.
//!
//! A module implements [`Module`]: [`Module::registration`] lists the iqs
//! it answers (by type, namespace and addressee), the hooks it takes part
//! in, the hosts it serves (`pubsub.<domain>`) and what it adds to service
//! discovery. The [`Modules`] registry is built once at start from the
//! config (`[modules.<name>]`, see `registry.rs`) and is read-only after:
//! dispatching a stanza is a map lookup or a walk over the few modules that
//! hooked that event, in a fixed order (the order of `registry::CATALOGUE`).
//!
//! Which node runs what (see ARCHITECTURE.md, "Feature modules"):
//! - `client_stanza`, iqs from clients, `session_*` and `resource_available`
//!   run on the node that holds the client's session;
//! - `inbound`, iqs to an account's bare JID, `offline` and host stanzas run
//!   on the node that routes the stanza (the sender's);
//! - `deliver` runs on the node that holds the recipient's session, just
//!   before the stanza is queued to it;
//! - `outbound_presence` runs on the node that holds the sending user's
//!   session, before presence the server sends on the user's behalf
//!   (broadcasts, probe answers) goes to one contact;
//! - `member_up` runs on every member that sees another come up;
//! - `user_deleted` runs wherever the account is removed, with the store only.
//!
//! A module keeps shared state in the store (any node answers), and what it
//! caches per node must be invalidated through the cluster like the roster
//! cache: a module lists such caches in [`Module::caches`] (they show in
//! `/api/caches`) and is handed the invalidations of their names in
//! [`Module::invalidate`]. State kept on a session lives and dies with it.

pub mod blocking;
pub mod carbons;
pub mod csi;
pub mod disco;
mod dispatch;
pub mod last;
pub mod mam;
pub mod muc;
pub mod offline;
pub mod pep;
pub mod ping;
pub mod presence;
pub mod private;
pub mod pubsub;
pub mod register;
mod registry;
pub mod roster;
pub mod session;
pub mod session_map;
pub mod sm;
pub mod vcard;
pub mod version;

use std::sync::Arc;

use starling_core::cache::StatsSource;
use starling_core::cluster::StanzaKind;
use starling_core::jid::{BareJid, FullJid, Jid};
use starling_core::xml::Element;

pub use self::dispatch::Modules;
pub use self::registry::{ModuleConfigError, Options, known_modules};
use crate::BoxFuture;
use crate::router::Routed;
use crate::server::Server;
use crate::session::LocalSession;
use crate::stanza::{Condition, IqType, Stanza, StanzaError};
use crate::storage::{StorageError, Store};

/// Whom an iq is addressed to, as far as choosing its handler goes
/// (RFC 6120 10.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Addressee {
    /// The domain itself (or no `to`, for a request that is not an account's).
    Server,
    /// A user's bare JID, handled by the server on the account's behalf:
    /// the sender's own (or no `to`) or another user's.
    Account,
    /// A full JID: handled before the iq is handed to that session.
    Resource,
}

/// One iq a module answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IqRoute {
    pub ty: IqType,
    /// The namespace of the iq's payload.
    pub ns: &'static str,
    pub to: Addressee,
}

impl IqRoute {
    pub const fn get(ns: &'static str, to: Addressee) -> IqRoute {
        IqRoute {
            ty: IqType::Get,
            ns,
            to,
        }
    }

    pub const fn set(ns: &'static str, to: Addressee) -> IqRoute {
        IqRoute {
            ty: IqType::Set,
            ns,
            to,
        }
    }

    /// Both the get and the set of a namespace (a stored document the
    /// account reads and writes).
    pub fn get_and_set(ns: &'static str, to: Addressee) -> Vec<IqRoute> {
        vec![IqRoute::get(ns, to), IqRoute::set(ns, to)]
    }

    /// The gets of a namespace to each of `to`.
    pub fn gets(ns: &'static str, to: &[Addressee]) -> Vec<IqRoute> {
        to.iter().map(|&to| IqRoute::get(ns, to)).collect()
    }

    /// The sets of a namespace to each of `to`.
    pub fn sets(ns: &'static str, to: &[Addressee]) -> Vec<IqRoute> {
        to.iter().map(|&to| IqRoute::set(ns, to)).collect()
    }
}

/// The body of a `user_deleted` hook that removes what an account stored,
/// by its username; a JID without one (the domain) owns nothing.
pub(crate) fn delete_for_account<'a, F>(
    user: &'a BareJid,
    delete: impl FnOnce(&'a str) -> F,
) -> BoxFuture<'a, Result<(), StorageError>>
where
    F: std::future::Future<Output = Result<(), StorageError>> + Send + 'a,
{
    match user.node() {
        Some(owner) => Box::pin(delete(owner.as_str())),
        None => Box::pin(async { Ok(()) }),
    }
}

/// For a request the server could not answer because the store (or a
/// cache over it) failed: logs `what` with the user and the error, and
/// answers the requester `<internal-server-error/>`.
pub(crate) fn internal_error<'a, E: std::fmt::Display>(
    user: &'a impl std::fmt::Display,
    what: &'static str,
) -> impl FnOnce(E) -> StanzaError + 'a {
    move |error| {
        tracing::error!(user = %user, %error, "{what}");
        StanzaError::new(Condition::InternalServerError)
    }
}

/// The events a module can hook, in the order a stanza meets them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hook {
    /// A stanza a bound client sent, before it is routed.
    ClientStanza,
    /// A stanza to one of our users' JIDs, before the delivery rules.
    Inbound,
    /// A stanza about to be queued to a session on this node.
    Deliver,
    /// Presence the server sends on a user's behalf to one contact.
    OutboundPresence,
    /// A message for a user with no session that takes it.
    Offline,
    SessionOpened,
    /// A session became available for bare-JID messages (available presence,
    /// priority not negative), under the user's delivery lock.
    ResourceAvailable,
    SessionClosed,
    /// Sessions on another member were lost with it, or came back.
    PeerSessions,
    /// Another member is up (joined, or back).
    MemberUp,
    /// The node is shutting down, before its sessions are closed.
    Stopping,
    /// The node's sessions are closed; the store is still open.
    Stopped,
    UserDeleted,
    /// The node is up: background tasks (purges) start here.
    Started,
    /// disco#items to an account: items that depend on the account's data.
    AccountItems,
    /// A session leaves this member without ending, or arrives from another
    /// one (XEP-0198 resumption on another member): `export_session` and
    /// `import_session` carry what the module keeps for it.
    SessionMoved,
}

/// An entry of XEP-0030 disco#info or disco#items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disco {
    Feature(&'static str),
    Identity {
        category: &'static str,
        ty: &'static str,
        name: Option<&'static str>,
    },
    /// A disco#items entry (a service the module runs).
    Item {
        jid: String,
        name: &'static str,
    },
}

/// A child of `<stream:features/>` offered once the client is authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamFeature {
    pub name: &'static str,
    pub ns: &'static str,
}

/// What a module handles; read once when the registry is built.
#[derive(Default)]
pub struct Registration {
    pub iqs: Vec<IqRoute>,
    pub hooks: Vec<Hook>,
    /// Domains whose stanzas (to the domain itself) the module takes.
    pub hosts: Vec<String>,
    /// What disco#info and disco#items on the server list for this module.
    pub server_disco: Vec<Disco>,
    /// What disco#info on an account (a bare JID) lists for this module.
    pub account_disco: Vec<Disco>,
    /// What the stream features after authentication list for this module.
    pub stream_features: Vec<StreamFeature>,
    /// The stanzas its `ClientStanza` and `Inbound` hooks are called for.
    pub stanza_kinds: StanzaKinds,
}

/// Which kinds of stanza a module's `ClientStanza` and `Inbound` hooks see.
/// A module whose hooks would pass the other kinds on untouched says so,
/// and the registry skips it for them: no call and no boxed future on the
/// path of every message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StanzaKinds {
    message: bool,
    presence: bool,
    iq: bool,
}

impl StanzaKinds {
    pub const ALL: StanzaKinds = StanzaKinds {
        message: true,
        presence: true,
        iq: true,
    };

    pub const fn only(kinds: &[StanzaKind]) -> StanzaKinds {
        let mut only = StanzaKinds {
            message: false,
            presence: false,
            iq: false,
        };
        let mut index = 0;
        while index < kinds.len() {
            match kinds[index] {
                StanzaKind::Message => only.message = true,
                StanzaKind::Presence => only.presence = true,
                StanzaKind::Iq => only.iq = true,
            }
            index += 1;
        }
        only
    }

    pub fn contains(self, kind: StanzaKind) -> bool {
        match kind {
            StanzaKind::Message => self.message,
            StanzaKind::Presence => self.presence,
            StanzaKind::Iq => self.iq,
        }
    }
}

impl Default for StanzaKinds {
    fn default() -> StanzaKinds {
        StanzaKinds::ALL
    }
}

/// One of a module's figures for `/metrics`.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub name: &'static str,
    pub help: &'static str,
    /// A counter only grows; anything else is a gauge.
    pub counter: bool,
    pub value: u64,
}

impl Metric {
    /// A counter's current value.
    pub fn counter(
        name: &'static str,
        help: &'static str,
        value: &std::sync::atomic::AtomicU64,
    ) -> Metric {
        Metric {
            name,
            help,
            counter: true,
            value: value.load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    pub fn gauge(name: &'static str, help: &'static str, value: u64) -> Metric {
        Metric {
            name,
            help,
            counter: false,
            value,
        }
    }
}

/// What a hook did with a stanza.
pub enum Flow {
    /// Not this module's business: the next module, then the core, sees it.
    Continue(Stanza),
    /// The module took it and counted its outcome (`router::count`, a reply
    /// or a bounce), which it hands back.
    Done(Routed),
}

/// What a deliver hook decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Deliver,
    /// Not for this session (e.g. a roster push it did not ask for); the
    /// module has answered the sender if the stanza needs an answer.
    Withhold,
}

/// An iq request handed to the module that registered its route.
pub struct IqRequest {
    pub stanza: Stanza,
    /// The bare JID the request is about: the addressee for
    /// [`Addressee::Account`] (the sender's own when there was no `to`),
    /// the resource's user for [`Addressee::Resource`], `None` for the server.
    pub account: Option<BareJid>,
    /// The sender's session when the request came from a client on this node.
    pub session: Option<Arc<LocalSession>>,
}

impl IqRequest {
    /// The requester's full or bare JID (stamped by the core; never absent
    /// for a stanza from a client).
    pub fn from(&self) -> Option<&Jid> {
        self.stanza.from.as_ref()
    }

    /// True when the requester is the account the request is about.
    pub fn is_own_account(&self) -> bool {
        match (&self.account, &self.stanza.from) {
            (Some(account), Some(from)) => from.to_bare() == *account,
            _ => false,
        }
    }
}

/// A feature. Every method but `name` and `registration` has a default that
/// does nothing; the registry calls a method only if the registration lists
/// its route or hook.
pub trait Module: Send + Sync + 'static {
    /// The name of its `[modules.<name>]` config section.
    fn name(&self) -> &'static str;

    fn registration(&self) -> Registration;

    /// An iq this module registered for; it must reply or bounce, and
    /// say how that was counted.
    fn iq<'a>(&'a self, server: &'a Server, request: IqRequest) -> BoxFuture<'a, Routed> {
        Box::pin(async move {
            let error = StanzaError::new(Condition::FeatureNotImplemented);
            crate::router::bounce(server, &request.stanza, error).await
        })
    }

    /// A stanza to one of the module's hosts (not an iq the registry routed).
    /// `stanza.hops` says whether it crossed from another member (above 0)
    /// and how often. `returned`: one of this member's own stanzas that a
    /// peer's dying link gave back unacknowledged; the peer may or may not
    /// have handled it.
    fn host_stanza<'a>(
        &'a self,
        server: &'a Server,
        stanza: Stanza,
        returned: bool,
    ) -> BoxFuture<'a, Routed> {
        let _ = returned;
        Box::pin(async move {
            let error = StanzaError::new(Condition::ServiceUnavailable);
            crate::router::bounce(server, &stanza, error).await
        })
    }

    fn client_stanza<'a>(
        &'a self,
        server: &'a Server,
        session: &'a Arc<LocalSession>,
        stanza: Stanza,
    ) -> BoxFuture<'a, Flow> {
        let _ = (server, session);
        Box::pin(async move { Flow::Continue(stanza) })
    }

    fn inbound<'a>(
        &'a self,
        server: &'a Server,
        stanza: Stanza,
        to: &'a Jid,
    ) -> BoxFuture<'a, Flow> {
        let _ = (server, to);
        Box::pin(async move { Flow::Continue(stanza) })
    }

    /// Synchronous: it runs on every delivery, often inside loops that must
    /// not wait. Reads session state and caches only.
    fn deliver(&self, server: &Server, session: &LocalSession, stanza: &Element) -> Delivery {
        let _ = (server, session, stanza);
        Delivery::Deliver
    }

    /// Whether presence the server sends for `user` (who has a session on
    /// this node) may go to `contact`. Synchronous like `deliver`.
    fn outbound_presence(&self, server: &Server, user: &BareJid, contact: &Jid) -> Delivery {
        let _ = (server, user, contact);
        Delivery::Deliver
    }

    /// XEP-0030 items of `account` that `requester` may see, beyond the
    /// fixed ones of [`Registration::account_disco`] (e.g. PEP nodes).
    fn account_items<'a>(
        &'a self,
        server: &'a Server,
        account: &'a BareJid,
        requester: &'a BareJid,
    ) -> BoxFuture<'a, Result<Vec<Element>, StorageError>> {
        let _ = (server, account, requester);
        Box::pin(async { Ok(Vec::new()) })
    }

    /// The per-node caches the module keeps; the registry's owner registers
    /// them for the admin side, and invalidations naming them come to
    /// [`Module::invalidate`].
    fn caches(&self) -> Vec<Arc<dyn StatsSource>> {
        Vec::new()
    }

    /// Another member changed what `key` of the module's cache `cache`
    /// holds. The member waits for this to finish before it answers its
    /// client, so a reload here is in place before the change is confirmed.
    fn invalidate<'a>(
        &'a self,
        server: &'a Server,
        cache: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, ()> {
        let _ = (server, cache, key);
        Box::pin(async {})
    }

    fn offline<'a>(
        &'a self,
        server: &'a Server,
        stanza: Stanza,
        user: &'a BareJid,
    ) -> BoxFuture<'a, Flow> {
        let _ = (server, user);
        Box::pin(async move { Flow::Continue(stanza) })
    }

    /// A client bound `session`; `replaced` is the session under the same
    /// full JID that it replaced on this member, if any.
    fn session_opened<'a>(
        &'a self,
        server: &'a Server,
        session: &'a Arc<LocalSession>,
        replaced: Option<&'a Arc<LocalSession>>,
    ) -> BoxFuture<'a, ()> {
        let _ = (server, session, replaced);
        Box::pin(async {})
    }

    fn resource_available<'a>(
        &'a self,
        server: &'a Server,
        session: &'a LocalSession,
    ) -> BoxFuture<'a, ()> {
        let _ = (server, session);
        Box::pin(async {})
    }

    /// By default the session's state goes as it would to another member
    /// ([`Module::export_session`]), and what was exported is dropped.
    fn session_closed<'a>(
        &'a self,
        server: &'a Server,
        session: &'a Arc<LocalSession>,
    ) -> BoxFuture<'a, ()> {
        let _ = self.export_session(server, session);
        Box::pin(async {})
    }

    /// Sessions of another member were lost with it (`regained_from: None`)
    /// or found alive again after all (`Some(node)`).
    fn peer_sessions<'a>(
        &'a self,
        server: &'a Server,
        sessions: &'a [FullJid],
        regained_from: Option<starling_core::cluster::NodeId>,
    ) -> BoxFuture<'a, ()> {
        let _ = (server, sessions, regained_from);
        Box::pin(async {})
    }

    /// Another member is up (it joined, came back, or was heard again):
    /// work placed by member may now belong to it.
    fn member_up<'a>(
        &'a self,
        server: &'a Server,
        node: starling_core::cluster::NodeId,
    ) -> BoxFuture<'a, ()> {
        let _ = (server, node);
        Box::pin(async {})
    }

    /// The node is shutting down; its sessions are still open (they are
    /// closed when every module returned).
    fn stopping<'a>(&'a self, server: &'a Server) -> BoxFuture<'a, ()> {
        let _ = server;
        Box::pin(async {})
    }

    /// Every session of the node is closed and the store is still open:
    /// write what is pending before the process ends.
    fn stopped<'a>(&'a self, server: &'a Server) -> BoxFuture<'a, ()> {
        let _ = server;
        Box::pin(async {})
    }

    /// The node is up and about to take clients. A task spawned here holds
    /// the server weakly or stops when `server.shutdown` fires.
    fn started(&self, server: &Arc<Server>) {
        let _ = server;
    }

    /// Figures for `/metrics` (names start with `starling_`).
    fn metrics(&self) -> Vec<Metric> {
        Vec::new()
    }

    /// The session moves to another member (its client resumed there): forget
    /// it here without telling anyone it ended, and return what the module
    /// keeps for it, for [`Module::import_session`] there.
    fn export_session(&self, server: &Server, session: &LocalSession) -> Option<String> {
        let _ = (server, session);
        None
    }

    /// A session arrived from another member with what the module kept for
    /// it there (`None`: nothing). Runs before the client hears it resumed.
    /// By default, state that came along goes to [`Module::restore_session`].
    fn import_session<'a>(
        &'a self,
        server: &'a Server,
        session: &'a Arc<LocalSession>,
        state: Option<&'a str>,
    ) -> BoxFuture<'a, ()> {
        if let Some(state) = state {
            self.restore_session(server, session, state);
        }
        Box::pin(async {})
    }

    /// What [`Module::export_session`] returned on another member, for a
    /// session that arrived here: keep it again (synchronous: the module's
    /// per-session maps only).
    fn restore_session(&self, server: &Server, session: &Arc<LocalSession>, state: &str) {
        let _ = (server, session, state);
    }

    /// XEP-0352 client state; only the `csi` module answers.
    fn client_state(&self) -> Option<&csi::CsiModule> {
        None
    }

    /// The stream-management service; only the `sm` module has one.
    fn stream_management(&self) -> Option<Arc<crate::sm::StreamManagement>> {
        None
    }

    /// The account is gone: remove everything the module stored for it.
    /// Runs with the store only (also from `starling user del`).
    fn user_deleted<'a>(
        &'a self,
        store: &'a Store,
        user: &'a BareJid,
    ) -> BoxFuture<'a, Result<(), StorageError>> {
        let _ = (store, user);
        Box::pin(async { Ok(()) })
    }
}
