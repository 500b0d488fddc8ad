//! What is left of session establishment after the bind: the RFC 3921
//! `<session/>` request old clients still send (answered with a result),
//! and a second `<bind/>` on a bound stream (refused).

use starling_core::xml::ns;

use super::{Addressee, IqRequest, IqRoute, Module, ModuleConfigError, Options, Registration};
use crate::BoxFuture;
use crate::router::Routed;
use crate::router::bounce;
use crate::router::iq::reply;
use crate::server::Server;
use crate::stanza::{Condition, StanzaError};

pub struct SessionModule;

impl SessionModule {
    pub fn new(options: Options) -> Result<SessionModule, ModuleConfigError> {
        options.none()?;
        Ok(SessionModule)
    }
}

impl Module for SessionModule {
    fn name(&self) -> &'static str {
        "session"
    }

    fn registration(&self) -> Registration {
        Registration {
            iqs: vec![
                IqRoute::set(ns::SESSION, Addressee::Server),
                IqRoute::set(ns::BIND, Addressee::Server),
            ],
            ..Registration::default()
        }
    }

    fn iq<'a>(&'a self, server: &'a Server, request: IqRequest) -> BoxFuture<'a, Routed> {
        Box::pin(async move {
            let stanza = &request.stanza;
            if stanza
                .payload()
                .is_some_and(|payload| payload.ns() == ns::SESSION)
            {
                return reply(server, stanza, None).await;
            }
            let error = StanzaError::new(Condition::NotAllowed)
                .with_text("This stream already has a bound resource");
            bounce(server, stanza, error).await
        })
    }
}
