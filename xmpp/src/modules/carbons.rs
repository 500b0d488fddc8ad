//! XEP-0280 message carbons: a user's other devices see the chats each
//! device sends and receives.
//!
//! In a cluster the copies are made where the original is routed: a sent
//! copy on the sender's member (`client_stanza`), a received copy on the
//! member routing the message to the user (`inbound`). Each copy goes to
//! every other available session of the user, wherever it is; the member
//! holding a session delivers it only if that session enabled carbons
//! (`deliver`), which is state kept with the session on its member.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use starling_core::cluster::StanzaKind;
use starling_core::jid::{BareJid, FullJid, Jid, same_bare};
use starling_core::xml::{Element, ns};

use super::session_map::SessionMap;
use super::{
    Addressee, Delivery, Disco, Flow, Hook, IqRequest, IqRoute, Metric, Module, ModuleConfigError,
    Options, Registration, StanzaKinds,
};
use crate::BoxFuture;
use crate::router::Routed;
use crate::router::bounce;
use crate::router::iq::reply;
use crate::router::resources::{self, Target, message_recipients, send_to};
use crate::server::Server;
use crate::session::LocalSession;
use crate::stanza::{Condition, MessageType, Stanza, StanzaError};

pub const CARBONS: &str = "urn:xmpp:carbons:2";
const FORWARD: &str = "urn:xmpp:forward:0";
const HINTS: &str = "urn:xmpp:hints";

pub struct Carbons {
    /// Sessions here that enabled carbons.
    enabled: SessionMap<()>,
    copies: AtomicU64,
    withheld: AtomicU64,
}

impl Carbons {
    pub fn new(options: Options) -> Result<Carbons, ModuleConfigError> {
        options.none()?;
        Ok(Carbons {
            enabled: SessionMap::default(),
            copies: AtomicU64::new(0),
            withheld: AtomicU64::new(0),
        })
    }
}

impl Module for Carbons {
    fn name(&self) -> &'static str {
        "carbons"
    }

    fn registration(&self) -> Registration {
        Registration {
            iqs: IqRoute::sets(CARBONS, &[Addressee::Server, Addressee::Account]),
            hooks: vec![
                Hook::ClientStanza,
                Hook::Inbound,
                Hook::Deliver,
                Hook::SessionClosed,
                Hook::SessionMoved,
            ],
            server_disco: vec![Disco::Feature(CARBONS)],
            stanza_kinds: StanzaKinds::only(&[StanzaKind::Message]),
            ..Registration::default()
        }
    }

    fn iq<'a>(&'a self, server: &'a Server, request: IqRequest) -> BoxFuture<'a, Routed> {
        Box::pin(async move {
            let stanza = &request.stanza;
            let session = match &request.session {
                Some(session) if request.account.is_none() || request.is_own_account() => session,
                _ => {
                    let error = StanzaError::new(Condition::Forbidden)
                        .with_text("Carbons are enabled by the session itself");
                    return bounce(server, stanza, error).await;
                }
            };
            match stanza.payload().map(Element::name) {
                Some("enable") => {
                    self.enabled.set(&session.jid, ());
                }
                Some("disable") => {
                    self.enabled.remove(&session.jid);
                }
                _ => {
                    let error = StanzaError::new(Condition::BadRequest)
                        .with_text("Expected <enable/> or <disable/>");
                    return bounce(server, stanza, error).await;
                }
            }
            reply(server, stanza, None).await
        })
    }

    fn client_stanza<'a>(
        &'a self,
        server: &'a Server,
        session: &'a Arc<LocalSession>,
        stanza: Stanza,
    ) -> BoxFuture<'a, Flow> {
        Box::pin(async move {
            if stanza.kind == StanzaKind::Message && stanza.to.is_some() {
                if is_private(&stanza.element) {
                    return Flow::Continue(stanza);
                }
                let to_self = stanza
                    .to
                    .as_ref()
                    .is_some_and(|to| same_bare(to, &session.jid));
                if eligible(&stanza) && !to_self && !only_session(server, &session.jid) {
                    let user = session.jid.to_bare();
                    let targets = other_sessions(server, &user, Some(&session.jid));
                    self.copy(server, &user, "sent", &stanza.element, targets);
                }
            }
            Flow::Continue(stanza)
        })
    }

    fn inbound<'a>(
        &'a self,
        server: &'a Server,
        stanza: Stanza,
        to: &'a Jid,
    ) -> BoxFuture<'a, Flow> {
        Box::pin(async move {
            if stanza.kind != StanzaKind::Message
                || !eligible(&stanza)
                || is_private(&stanza.element)
            {
                return Flow::Continue(stanza);
            }
            let from_self = stanza.from.as_ref().is_some_and(|from| same_bare(from, to));
            if from_self {
                return Flow::Continue(stanza);
            }
            if to
                .try_as_full()
                .is_ok_and(|full| only_session(server, full))
            {
                return Flow::Continue(stanza);
            }
            let user = to.to_bare();
            let mut targets = other_sessions(server, &user, None);
            if !targets.is_empty() {
                let recipients = recipients(server, &stanza, to);
                targets.retain(|target| recipients.iter().all(|jid| jid != target.jid()));
                self.copy(server, &user, "received", &stanza.element, targets);
            }
            Flow::Continue(stanza)
        })
    }

    fn deliver(&self, _server: &Server, session: &LocalSession, stanza: &Element) -> Delivery {
        if !is_carbon(stanza) || self.enabled.check(&session.jid, |_| true) {
            return Delivery::Deliver;
        }
        self.withheld.fetch_add(1, Ordering::Relaxed);
        Delivery::Withhold
    }

    /// Also what closing the session does (the default `session_closed`).
    fn export_session(&self, _server: &Server, session: &LocalSession) -> Option<String> {
        self.enabled
            .remove(&session.jid)
            .map(|()| "enabled".to_owned())
    }

    fn restore_session(&self, _server: &Server, session: &Arc<LocalSession>, state: &str) {
        if state == "enabled" {
            self.enabled.set(&session.jid, ());
        }
    }

    fn metrics(&self) -> Vec<Metric> {
        vec![
            Metric::counter(
                "starling_carbons_copies_total",
                "Carbon copies sent (one per other session of the user, on any member).",
                &self.copies,
            ),
            Metric::counter(
                "starling_carbons_withheld_total",
                "Carbon copies not delivered: the session did not enable carbons.",
                &self.withheld,
            ),
            Metric::gauge(
                "starling_carbons_enabled_sessions",
                "Sessions on this member with carbons enabled.",
                self.enabled.len() as u64,
            ),
        ]
    }
}

impl Carbons {
    /// Sends `<sent/>` or `<received/>` copies of `original` to `targets`.
    fn copy(
        &self,
        server: &Server,
        user: &BareJid,
        direction: &str,
        original: &Element,
        targets: Vec<Target>,
    ) {
        if targets.is_empty() {
            return;
        }
        let ty = original.attr("type").unwrap_or("normal").to_owned();
        let wrapper = Element::new(direction.to_owned(), CARBONS)
            .with_child(Element::new("forwarded", FORWARD).with_child(original.clone()));
        for target in targets {
            let carbon = Element::new("message", ns::CLIENT)
                .with_attr("from", user.as_str())
                .with_attr("to", target.jid().as_str())
                .with_attr("type", ty.clone())
                .with_child(wrapper.clone());
            if send_to(server, &target, carbon, StanzaKind::Message).is_ok() {
                self.copies.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// XEP-0280 6: chat messages, and normal ones with a body; never a
/// carbon itself, a groupchat or a headline.
fn eligible(stanza: &Stanza) -> bool {
    let element = &stanza.element;
    if is_carbon(element) || element.has_child("no-copy", HINTS) {
        return false;
    }
    match stanza.message_type().unwrap_or(MessageType::Normal) {
        MessageType::Chat => true,
        MessageType::Normal => element.has_child("body", ns::CLIENT),
        MessageType::Error => false,
        MessageType::Groupchat | MessageType::Headline => false,
    }
}

fn is_carbon(element: &Element) -> bool {
    element.name() == "message"
        && (element.has_child("sent", CARBONS) || element.has_child("received", CARBONS))
}

/// XEP-0280 7: a message the sender marked private gets no copies, on
/// either side (the marker travels with it).
fn is_private(element: &Element) -> bool {
    element.has_child("private", CARBONS)
}

/// Whether `session` is the user's one session on any member, so that no
/// other session can want a copy: the common case, told without listing
/// the user's sessions.
fn only_session(server: &Server, session: &FullJid) -> bool {
    server.sessions.is_only_resource(session)
        && (!server.cluster.has_remote_sessions()
            || server
                .cluster
                .remote_resources(&session.clone().into_bare())
                .is_empty())
}

/// The user's available sessions other than `except`, on any member.
fn other_sessions(server: &Server, user: &BareJid, except: Option<&FullJid>) -> Vec<Target> {
    resources::resources(server, user)
        .into_iter()
        .filter(|candidate| candidate.available)
        .map(|candidate| candidate.target)
        .filter(|target| except != Some(target.jid()))
        .collect()
}

/// The sessions the router will hand the original to (they get no copy):
/// the full JID's session when it exists, else the bare-JID recipients.
fn recipients(server: &Server, stanza: &Stanza, to: &Jid) -> Vec<FullJid> {
    if let Ok(full) = to.try_as_full() {
        if server.sessions.get(full).is_some() || server.cluster.locate(full).is_some() {
            return vec![full.clone()];
        }
    }
    let ty = stanza.message_type().unwrap_or(MessageType::Normal);
    message_recipients(resources::resources(server, &to.to_bare()), ty)
        .iter()
        .map(|target| target.jid().clone())
        .collect()
}
