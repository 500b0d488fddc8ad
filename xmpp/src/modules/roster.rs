//! The roster module: `jabber:iq:roster` get and set for the account's
//! owner (RFC 6121 2), and roster pushes only to the resources that asked
//! for the roster (2.1.6). The roster engine itself is `crate::roster`.
//!
//! Its stream features: subscription pre-approval (RFC 6121 3.4.1) and
//! roster versioning (RFC 6121 2.6, XEP-0237), whose version lives in the
//! store with the roster and is removed with the account.

use starling_core::xml::{Element, ns};

use starling_core::jid::BareJid;

use super::{
    Addressee, Delivery, Hook, IqRequest, IqRoute, Module, ModuleConfigError, Options,
    Registration, StreamFeature,
};
use crate::BoxFuture;
use crate::roster::service::handle_iq;
use crate::router::Routed;
use crate::router::bounce;
use crate::server::Server;
use crate::session::LocalSession;
use crate::stanza::{Condition, StanzaError};
use crate::storage::{StorageError, Store};

/// RFC 6121 3.4.1: the roster keeps subscription pre-approvals.
const PRE_APPROVAL: StreamFeature = StreamFeature {
    name: "sub",
    ns: "urn:xmpp:features:pre-approval",
};

/// RFC 6121 2.6.1: roster gets may carry the version the client has.
const ROSTER_VERSIONING: StreamFeature = StreamFeature {
    name: "ver",
    ns: "urn:xmpp:features:rosterver",
};

pub struct RosterModule;

impl RosterModule {
    pub fn new(options: Options) -> Result<RosterModule, ModuleConfigError> {
        // Roster limits stay under `[limits]`, where they always were.
        options.none()?;
        Ok(RosterModule)
    }
}

impl Module for RosterModule {
    fn name(&self) -> &'static str {
        "roster"
    }

    fn registration(&self) -> Registration {
        Registration {
            iqs: IqRoute::get_and_set(ns::ROSTER, Addressee::Account),
            hooks: vec![Hook::Deliver, Hook::UserDeleted],
            stream_features: vec![PRE_APPROVAL, ROSTER_VERSIONING],
            ..Registration::default()
        }
    }

    fn iq<'a>(&'a self, server: &'a Server, request: IqRequest) -> BoxFuture<'a, Routed> {
        Box::pin(async move {
            match request.session {
                Some(session) if request.is_own_account() => {
                    handle_iq(server, &session, request.stanza).await
                }
                _ => {
                    let error = StanzaError::new(Condition::Forbidden)
                        .with_text("A roster is only for its owner");
                    bounce(server, &request.stanza, error).await
                }
            }
        })
    }

    /// The roster rows go with the account (`Store::delete_user`); its
    /// version is removed here too, for a store without foreign keys.
    fn user_deleted<'a>(
        &'a self,
        store: &'a Store,
        user: &'a BareJid,
    ) -> BoxFuture<'a, Result<(), StorageError>> {
        super::delete_for_account(user, |owner| store.delete_roster_version(owner))
    }

    fn deliver(&self, _server: &Server, session: &LocalSession, stanza: &Element) -> Delivery {
        if is_roster_push(stanza) && !session.presence().interested {
            Delivery::Withhold
        } else {
            Delivery::Deliver
        }
    }
}

/// A roster push made by the server (a client's iq carries its `from`).
fn is_roster_push(stanza: &Element) -> bool {
    stanza.name() == "iq"
        && stanza.attr("from").is_none()
        && stanza.attr("type") == Some("set")
        && stanza.has_child("query", ns::ROSTER)
}
