//! The roster module: `jabber:iq:roster` get and set for the account's
//! owner (RFC 6121 2), and roster pushes only to the resources that asked
//! for the roster (2.1.6). The roster engine itself is `crate::roster`.

use starling_core::xml::{Element, ns};

use super::{
    Addressee, Delivery, Hook, IqRequest, IqRoute, Module, ModuleConfigError, Options, Registration,
};
use crate::BoxFuture;
use crate::roster::service::handle_iq;
use crate::router::bounce;
use crate::server::Server;
use crate::session::LocalSession;
use crate::stanza::{Condition, StanzaError};

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
            iqs: vec![
                IqRoute::get(ns::ROSTER, Addressee::Account),
                IqRoute::set(ns::ROSTER, Addressee::Account),
            ],
            hooks: vec![Hook::Deliver],
            ..Registration::default()
        }
    }

    fn iq<'a>(&'a self, server: &'a Server, request: IqRequest) -> BoxFuture<'a, ()> {
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
