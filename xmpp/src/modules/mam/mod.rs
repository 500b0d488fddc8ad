//! XEP-0313 message archive management with XEP-0359 stanza ids: every
//! chat a user sends or receives is archived in the store, so a device
//! that was off, on any member, pages through its history.
//!
//! A received message is archived on the member routing it to the user
//! (`inbound`, before delivery or offline storage), which stamps it with
//! the archive's `<stanza-id/>`; a sent one on the sender's member
//! (`client_stanza`). The archive is the store's, so any member answers a
//! query and nothing is lost with a member.

pub mod prefs;
mod writer;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Deserialize;
use starling_core::cache::{CacheKind, Lru, StatsSource};
use starling_core::cluster::StanzaKind;
use starling_core::jid::{BareJid, Jid, same_bare};
use starling_core::xml::{Element, ns};

use super::{
    Addressee, Disco, Flow, Hook, IqRequest, IqRoute, Metric, Module, ModuleConfigError, Options,
    Registration, StanzaKinds,
};
use crate::BoxFuture;
use crate::metrics::Outcome;
use crate::pubsub::form::Submitted;
use crate::router::iq::reply;
use crate::router::resources::deliver_local;
use crate::router::{Routed, bounce, count, message};
use crate::server::Server;
use crate::session::LocalSession;
use crate::stanza::{Condition, IqType, MessageType, Stanza, StanzaError};
use crate::storage::{ArchiveQuery, NewArchived, StorageError, Store};
use crate::util::time::{now_ms, parse_xep0082, xep0082};
use prefs::{ArchivePrefs, Decision, DefaultMode};
use writer::ArchiveWriter;

pub const MAM: &str = "urn:xmpp:mam:2";
const SID: &str = "urn:xmpp:sid:0";
const RSM: &str = "http://jabber.org/protocol/rsm";
const FORWARD: &str = "urn:xmpp:forward:0";
const HINTS: &str = "urn:xmpp:hints";
const OMEMO: &str = "eu.siacs.conversations.axolotl";
const EXTENDED: &str = "urn:xmpp:mam:2#extended";

/// Name of the per-node cache of archiving preferences (also in cluster
/// invalidations).
const PREFS_CACHE: &str = "mam_prefs";

/// How often old messages are looked for when `max_age_days` is set.
const PURGE_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// `[modules.mam]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MamConfig {
    /// Messages in a page when the client does not say.
    pub default_page: u32,
    /// Most messages in one page, whatever the client asks.
    pub max_page: u32,
    /// Messages older than this many days are removed (hourly); 0 keeps
    /// them until the account is deleted.
    pub max_age_days: u32,
    /// What an account that never set preferences archives: always, roster
    /// (chats with roster contacts) or never.
    pub default_prefs: DefaultMode,
    /// Users whose preferences this member keeps in memory.
    pub prefs_cache_entries: usize,
}

impl Default for MamConfig {
    fn default() -> Self {
        MamConfig {
            default_page: 50,
            max_page: 250,
            max_age_days: 0,
            default_prefs: DefaultMode::Always,
            prefs_cache_entries: 100_000,
        }
    }
}

pub struct Mam {
    config: MamConfig,
    /// Writes archived messages in batches.
    writer: ArchiveWriter,
    queries: AtomicU64,
    expired: Arc<AtomicU64>,
    /// Each user's preferences, read on every archived message.
    prefs: Arc<Lru<String, Arc<ArchivePrefs>>>,
    /// Bumped by every change of preferences, so a read that raced one is
    /// not cached.
    prefs_changes: AtomicU64,
    /// Chats left out of an archive by its owner's preferences.
    skipped: AtomicU64,
}

impl Mam {
    pub fn new(options: Options) -> Result<Mam, ModuleConfigError> {
        let config: MamConfig = options.parse()?;
        if config.default_page == 0 || config.max_page < config.default_page {
            return Err(ModuleConfigError::Invalid {
                module: "mam",
                message: "`default_page` must be at least 1 and at most `max_page`".into(),
            });
        }
        Ok(Mam {
            config: config.clone(),
            writer: ArchiveWriter::new(),
            queries: AtomicU64::new(0),
            expired: Arc::new(AtomicU64::new(0)),
            prefs: Arc::new(Lru::new(
                PREFS_CACHE,
                CacheKind::Invalidated,
                config.prefs_cache_entries,
            )),
            prefs_changes: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
        })
    }
}

impl Module for Mam {
    fn name(&self) -> &'static str {
        "mam"
    }

    fn registration(&self) -> Registration {
        Registration {
            iqs: IqRoute::get_and_set(MAM, Addressee::Account),
            hooks: vec![
                Hook::ClientStanza,
                Hook::Inbound,
                Hook::UserDeleted,
                Hook::Started,
                Hook::Stopped,
            ],
            account_disco: vec![
                Disco::Feature(MAM),
                Disco::Feature(EXTENDED),
                Disco::Feature(SID),
            ],
            stanza_kinds: StanzaKinds::only(&[StanzaKind::Message]),
            ..Registration::default()
        }
    }

    fn iq<'a>(&'a self, server: &'a Server, request: IqRequest) -> BoxFuture<'a, Routed> {
        Box::pin(async move {
            let stanza = &request.stanza;
            let session = match &request.session {
                Some(session) if request.is_own_account() => session.clone(),
                _ => {
                    let error = StanzaError::new(Condition::Forbidden)
                        .with_text("An archive is only for its owner");
                    return bounce(server, stanza, error).await;
                }
            };
            let payload = stanza
                .payload()
                .map(|p| (p.name().to_owned(), stanza.iq_type()));
            match payload {
                Some((name, Some(IqType::Set))) if name == "query" => {
                    self.query(server, &session, stanza).await
                }
                Some((name, Some(IqType::Get))) if name == "query" => {
                    reply(server, stanza, Some(query_form())).await
                }
                Some((name, Some(IqType::Get))) if name == "metadata" => {
                    self.metadata(server, &session, stanza).await
                }
                Some((name, Some(IqType::Get))) if name == "prefs" => {
                    match self.prefs_of(server, &session.jid.to_bare()).await {
                        Ok(prefs) => reply(server, stanza, Some(prefs.to_element())).await,
                        Err(error) => {
                            tracing::error!(jid = %session.jid, %error, "reading archiving preferences failed");
                            let error = StanzaError::new(Condition::InternalServerError)
                                .with_text("The preferences could not be read; try again");
                            bounce(server, stanza, error).await
                        }
                    }
                }
                Some((name, Some(IqType::Set))) if name == "prefs" => {
                    self.set_prefs(server, &session, stanza).await
                }
                _ => {
                    let error = StanzaError::new(Condition::BadRequest)
                        .with_text("Expected <query/> or <prefs/>");
                    bounce(server, stanza, error).await
                }
            }
        })
    }

    fn client_stanza<'a>(
        &'a self,
        server: &'a Server,
        session: &'a Arc<LocalSession>,
        stanza: Stanza,
    ) -> BoxFuture<'a, Flow> {
        Box::pin(async move {
            if stanza.kind == StanzaKind::Message && archivable(&stanza) {
                let user = session.jid.to_bare();
                if let Some(to) = stanza.to.as_ref().filter(|to| !same_bare(to, &session.jid)) {
                    let with = to.to_bare();
                    if self.wanted(server, &user, &with).await {
                        let id = new_stanza_id();
                        self.archive(server, &user, &id, &with, &stanza.element)
                            .await;
                    }
                }
            }
            Flow::Continue(stanza)
        })
    }

    fn inbound<'a>(
        &'a self,
        server: &'a Server,
        mut stanza: Stanza,
        to: &'a Jid,
    ) -> BoxFuture<'a, Flow> {
        Box::pin(async move {
            if stanza.kind != StanzaKind::Message {
                return Flow::Continue(stanza);
            }
            let user = to.to_bare();
            // XEP-0359 3.1: an id claiming to be this archive's is not believed.
            strip_stanza_ids(&mut stanza.element, &user);
            if !archivable(&stanza) || message::account_exists(server, &user).await != Ok(true) {
                return Flow::Continue(stanza);
            }
            let with = stanza
                .from
                .as_ref()
                .map(Jid::to_bare)
                .unwrap_or_else(|| BareJid::new(&server.domain).expect("the domain is a JID"));
            if !self.wanted(server, &user, &with).await {
                return Flow::Continue(stanza);
            }
            let id = new_stanza_id();
            stanza.element.push_child(
                Element::new("stanza-id", SID)
                    .with_attr("by", user.as_str())
                    .with_attr("id", id.clone()),
            );
            self.archive(server, &user, &id, &with, &stanza.element)
                .await;
            Flow::Continue(stanza)
        })
    }

    fn started(&self, server: &Arc<Server>) {
        self.writer.start(server.store.clone());
        if self.config.max_age_days == 0 {
            return;
        }
        let max_age_ms = i64::from(self.config.max_age_days) * 86_400_000;
        let (store, stop, expired) = (
            server.store.clone(),
            server.shutdown.clone(),
            self.expired.clone(),
        );
        // Every member runs it; a second delete of the same rows finds none.
        tokio::spawn(async move {
            loop {
                match store.expire_archive(now_ms() - max_age_ms).await {
                    Ok(removed) => {
                        expired.fetch_add(removed, Ordering::Relaxed);
                        if removed > 0 {
                            tracing::info!(removed, "expired archived messages removed");
                        }
                    }
                    Err(error) => {
                        tracing::error!(%error, "removing expired archived messages failed; retried in an hour")
                    }
                }
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(PURGE_EVERY) => {}
                }
            }
        });
    }

    fn user_deleted<'a>(
        &'a self,
        store: &'a Store,
        user: &'a BareJid,
    ) -> BoxFuture<'a, Result<(), StorageError>> {
        Box::pin(async move {
            // Nothing handed over before the deletion may be written after it.
            self.writer.flush().await;
            crate::modules::delete_for_account(user, |owner| async move {
                store.delete_archive(owner).await?;
                store.delete_archive_prefs(owner).await
            })
            .await
        })
    }

    fn stopped<'a>(&'a self, _server: &'a Server) -> BoxFuture<'a, ()> {
        Box::pin(self.writer.flush())
    }

    fn caches(&self) -> Vec<Arc<dyn StatsSource>> {
        vec![self.prefs.clone()]
    }

    fn invalidate<'a>(
        &'a self,
        _server: &'a Server,
        _cache: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            self.prefs_changes.fetch_add(1, Ordering::AcqRel);
            self.prefs.remove(&key.to_owned());
        })
    }

    fn metrics(&self) -> Vec<Metric> {
        let counter = Metric::counter;
        vec![
            counter(
                "starling_mam_archived_total",
                "Messages archived (once per archive).",
                &self.writer.archived,
            ),
            counter(
                "starling_mam_archive_failures_total",
                "Messages delivered but not archived because the store failed.",
                &self.writer.failures,
            ),
            counter(
                "starling_mam_skipped_total",
                "Chats not archived because of the owner's preferences.",
                &self.skipped,
            ),
            counter(
                "starling_mam_queries_total",
                "Archive queries answered.",
                &self.queries,
            ),
        ]
    }
}

impl Mam {
    /// The user's preferences: cached, else read from the store (or the
    /// server's default when they set none).
    async fn prefs_of(
        &self,
        server: &Server,
        user: &BareJid,
    ) -> Result<Arc<ArchivePrefs>, StorageError> {
        let fallback = self.config.default_prefs;
        let Some(owner) = user.node().map(|node| node.to_string()) else {
            return Ok(Arc::new(ArchivePrefs::server_default(fallback)));
        };
        if let Some(prefs) = self.prefs.get(&owner) {
            return Ok(prefs);
        }
        let before = self.prefs_changes.load(Ordering::Acquire);
        let prefs = Arc::new(match server.store.archive_prefs(&owner).await? {
            Some(stored) => ArchivePrefs::from_stored(stored, fallback),
            None => ArchivePrefs::server_default(fallback),
        });
        // A change that landed meanwhile may be newer than this read.
        if self.prefs_changes.load(Ordering::Acquire) == before {
            self.prefs.insert(owner, prefs.clone());
        }
        Ok(prefs)
    }

    /// Whether `owner`'s archive keeps a chat with `with`. When the
    /// preferences or the roster cannot be read the chat is archived: a
    /// message kept against a preference can be deleted, a lost one not.
    async fn wanted(&self, server: &Server, owner: &BareJid, with: &BareJid) -> bool {
        let prefs = match self.prefs_of(server, owner).await {
            Ok(prefs) => prefs,
            Err(error) => {
                tracing::error!(%owner, %error, "archiving preferences unreadable; archiving");
                return true;
            }
        };
        let wanted = match prefs.decide(with) {
            Decision::Archive => true,
            Decision::Skip => false,
            Decision::IfInRoster => match server.rosters.get(owner).await {
                Ok(roster) => roster.state(with).is_some(),
                Err(error) => {
                    tracing::error!(%owner, %error, "roster unreadable for archiving preferences; archiving");
                    true
                }
            },
        };
        if !wanted {
            self.skipped.fetch_add(1, Ordering::Relaxed);
        }
        wanted
    }

    /// XEP-0313 5.2: replaces the preferences, on every member.
    async fn set_prefs(
        &self,
        server: &Server,
        session: &Arc<LocalSession>,
        stanza: &Stanza,
    ) -> Routed {
        let Some(request) = stanza.payload() else {
            return count(server, Outcome::Discarded);
        };
        let prefs = match ArchivePrefs::parse(request) {
            Ok(prefs) => prefs,
            Err(error) => return bounce(server, stanza, error).await,
        };
        let Some(owner) = session.jid.node().map(|node| node.to_string()) else {
            return count(server, Outcome::Discarded);
        };
        self.prefs_changes.fetch_add(1, Ordering::AcqRel);
        if let Err(error) = server
            .store
            .set_archive_prefs(&owner, &prefs.to_stored())
            .await
        {
            tracing::error!(jid = %session.jid, %error, "storing archiving preferences failed");
            let error = StanzaError::new(Condition::InternalServerError)
                .with_text("The preferences could not be stored; nothing changed");
            return bounce(server, stanza, error).await;
        }
        self.prefs.insert(owner.clone(), Arc::new(prefs.clone()));
        server.cluster.invalidate(PREFS_CACHE, owner).await;
        reply(server, stanza, Some(prefs.to_element())).await
    }

    async fn archive(
        &self,
        server: &Server,
        owner: &BareJid,
        id: &str,
        with: &BareJid,
        element: &Element,
    ) {
        let Some(username) = owner.node() else { return };
        let message = NewArchived {
            owner: username.to_string(),
            stanza_id: id.to_owned(),
            with: with.to_string(),
            stamp_ms: now_ms(),
            stanza: String::from_utf8(element.to_bytes())
                .unwrap_or_else(|bytes| String::from_utf8_lossy(bytes.as_bytes()).into_owned()),
        };
        self.writer.write(&server.store, message).await;
    }

    /// Answers a query: one message per result, then the `<fin/>`.
    async fn query(&self, server: &Server, session: &Arc<LocalSession>, stanza: &Stanza) -> Routed {
        let Some(request) = stanza.payload() else {
            return count(server, Outcome::Discarded);
        };
        let query = match self.parse_query(request) {
            Ok(query) => query,
            Err(error) => return bounce(server, stanza, error).await,
        };
        let Some(owner) = session.jid.node() else {
            return count(server, Outcome::Discarded);
        };
        let page = match server.store.query_archive(owner.as_str(), &query).await {
            Ok(Some(page)) => page,
            Ok(None) => {
                let error = StanzaError::new(Condition::ItemNotFound)
                    .with_text("The archive holds no message with that id");
                return bounce(server, stanza, error).await;
            }
            Err(error) => {
                tracing::error!(jid = %session.jid, %error, "an archive query failed");
                let error = StanzaError::new(Condition::InternalServerError)
                    .with_text("The archive could not be read; try again");
                return bounce(server, stanza, error).await;
            }
        };
        self.queries.fetch_add(1, Ordering::Relaxed);
        let query_id = request.attr("queryid").map(str::to_owned);
        let owner_jid = session.jid.to_bare();
        let mut messages = page.messages;
        // XEP-0313 4.1.2: the page's own order reversed, newest first.
        if request.has_child("flip-page", MAM) {
            messages.reverse();
        }
        for archived in &messages {
            let Ok(original) = crate::stream::parse_element(archived.stanza.as_bytes()) else {
                tracing::error!(owner = %owner_jid, id = archived.stanza_id, "an archived message is unreadable");
                continue;
            };
            let mut result =
                Element::new("result", MAM).with_attr("id", archived.stanza_id.clone());
            if let Some(query_id) = &query_id {
                result.set_attr("queryid", query_id.clone());
            }
            result.push_child(
                Element::new("forwarded", FORWARD)
                    .with_child(
                        Element::new("delay", ns::DELAY)
                            .with_attr("stamp", xep0082(archived.stamp_ms)),
                    )
                    .with_child(original),
            );
            let message = Element::new("message", ns::CLIENT)
                .with_attr("from", owner_jid.as_str())
                .with_attr("to", session.jid.as_str())
                .with_child(result);
            if deliver_local(server, session, message).is_err() {
                return count(server, Outcome::Discarded);
            }
        }
        let mut set = Element::new("set", RSM);
        if let (Some(first), Some(last)) = (messages.first(), messages.last()) {
            set.push_child(Element::new("first", RSM).with_text(first.stanza_id.clone()));
            set.push_child(Element::new("last", RSM).with_text(last.stanza_id.clone()));
        }
        let fin = Element::new("fin", MAM)
            .with_attr("complete", if page.complete { "true" } else { "false" })
            .with_child(set);
        reply(server, stanza, Some(fin)).await
    }

    /// XEP-0313 6: the first and last message of the archive.
    async fn metadata(
        &self,
        server: &Server,
        session: &Arc<LocalSession>,
        stanza: &Stanza,
    ) -> Routed {
        let Some(owner) = session.jid.node() else {
            return count(server, Outcome::Discarded);
        };
        let ends = match server.store.archive_ends(owner.as_str()).await {
            Ok(ends) => ends,
            Err(error) => {
                tracing::error!(jid = %session.jid, %error, "reading archive metadata failed");
                let error = StanzaError::new(Condition::InternalServerError);
                return bounce(server, stanza, error).await;
            }
        };
        let mut metadata = Element::new("metadata", MAM);
        if let Some(ends) = ends {
            for (name, message) in [("start", &ends.first), ("end", &ends.last)] {
                metadata.push_child(
                    Element::new(name, MAM)
                        .with_attr("id", message.stanza_id.clone())
                        .with_attr("timestamp", xep0082(message.stamp_ms)),
                );
            }
        }
        reply(server, stanza, Some(metadata)).await
    }

    fn parse_query(&self, request: &Element) -> Result<ArchiveQuery, StanzaError> {
        parse_query(request, self.config.default_page, self.config.max_page)
    }
}

/// Reads a XEP-0313 query (form fields and XEP-0059 paging); also used for
/// the archives of group chat rooms.
pub fn parse_query(
    request: &Element,
    default_page: u32,
    max_page: u32,
) -> Result<ArchiveQuery, StanzaError> {
    {
        let mut query = ArchiveQuery {
            max: default_page,
            ..ArchiveQuery::default()
        };
        if let Some(form) = request.child("x", ns::XDATA).map(Submitted::parse) {
            for (var, values) in &form.fields {
                let value = values.first().map(String::as_str).unwrap_or_default();
                let bad = |what: &str| {
                    StanzaError::new(Condition::BadRequest).with_text(format!("{var}: {what}"))
                };
                match var.as_str() {
                    "with" => {
                        let jid = Jid::new(value).map_err(|_| bad("not a JID"))?;
                        query.with = Some(jid.to_bare().to_string());
                    }
                    "start" => {
                        query.start_ms = Some(
                            parse_xep0082(value)
                                .map_err(|reason| bad(&format!("not a XEP-0082 date: {reason}")))?,
                        )
                    }
                    "end" => {
                        query.end_ms = Some(
                            parse_xep0082(value)
                                .map_err(|reason| bad(&format!("not a XEP-0082 date: {reason}")))?,
                        )
                    }
                    "after-id" => query.after = Some(value.to_owned()),
                    "ids" => query.ids = values.clone(),
                    "before-id" => query.before = Some(value.to_owned()),
                    other => {
                        return Err(StanzaError::new(Condition::FeatureNotImplemented)
                            .with_text(format!("The field {other} is not supported")));
                    }
                }
            }
        }
        if let Some(set) = request.child("set", RSM) {
            if let Some(max) = set.child("max", RSM) {
                query.max = max.text().trim().parse().map_err(|_| {
                    StanzaError::new(Condition::BadRequest).with_text("<max/> is not a number")
                })?;
            }
            if let Some(after) = set.child("after", RSM) {
                query.after = Some(after.text());
            }
            if let Some(before) = set.child("before", RSM) {
                match before.text() {
                    text if text.is_empty() => query.from_end = true,
                    text => query.before = Some(text),
                }
            }
        }
        query.max = query.max.min(max_page);
        Ok(query)
    }
}

/// XEP-0313 archives chats and normal messages with something to read; a
/// message the sender asked not to store, an error, a headline, a
/// groupchat (the room archives those) and forwarded copies are not.
fn archivable(stanza: &Stanza) -> bool {
    let element = &stanza.element;
    let readable = element.has_child("body", ns::CLIENT) || element.has_child("encrypted", OMEMO);
    let refused = element.has_child("no-store", HINTS)
        || element.has_child("no-permanent-store", HINTS)
        || element.has_child("result", MAM)
        || element.has_child("sent", super::carbons::CARBONS)
        || element.has_child("received", super::carbons::CARBONS);
    let kind_ok = matches!(
        stanza.message_type().unwrap_or(MessageType::Normal),
        MessageType::Chat | MessageType::Normal
    );
    readable && kind_ok && !refused
}

/// Removes the stanza ids of a message when one claims to be this
/// archive's (those of other archives go with it; a chat carries none).
fn strip_stanza_ids(element: &mut Element, archive: &BareJid) {
    let claims_ours = element
        .children()
        .any(|child| child.is("stanza-id", SID) && child.attr("by") == Some(archive.as_str()));
    if claims_ours {
        element.remove_children("stanza-id", SID);
    }
}

/// 96 random bits in hex, written straight into one string.
fn new_stanza_id() -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut random = [0u8; 12];
    rand::fill(&mut random[..]);
    let mut id = String::with_capacity(24);
    for byte in random {
        id.push(char::from(HEX[usize::from(byte >> 4)]));
        id.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    id
}

/// The fields a query may use (XEP-0313 5.1).
fn query_form() -> Element {
    let mut form = crate::pubsub::form::FormBuilder::new("form", MAM);
    form.field("with", "jid-single", None, &[]);
    form.field("start", "text-single", None, &[]);
    form.field("end", "text-single", None, &[]);
    form.field("after-id", "text-single", None, &[]);
    form.field("before-id", "text-single", None, &[]);
    form.field("ids", "text-multi", None, &[]);
    Element::new("query", MAM).with_child(form.build())
}

#[cfg(test)]
mod tests {
    use super::MamConfig;

    #[test]
    fn stanza_ids_are_24_lowercase_hex_digits() {
        let (a, b) = (super::new_stanza_id(), super::new_stanza_id());
        assert_eq!(a.len(), 24);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
        );
        assert_ne!(a, b, "96 random bits each");
    }

    #[test]
    fn the_default_config_file_shows_the_defaults() {
        let documented: MamConfig = crate::modules::registry::documented("mam");
        assert_eq!(documented, MamConfig::default());
    }
}
