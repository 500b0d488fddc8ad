//! XEP-0199 ping: the server answers for itself and for its accounts (a
//! ping to a bare JID tells whether the account exists).

use starling_core::xml::ns;

use super::{
    Addressee, Disco, IqRequest, IqRoute, Module, ModuleConfigError, Options, Registration,
};
use crate::BoxFuture;
use crate::router::Routed;
use crate::router::iq::answer;
use crate::router::message;
use crate::server::Server;
use crate::stanza::{Condition, StanzaError};

pub struct Ping;

impl Ping {
    pub fn new(options: Options) -> Result<Ping, ModuleConfigError> {
        options.none()?;
        Ok(Ping)
    }
}

impl Module for Ping {
    fn name(&self) -> &'static str {
        "ping"
    }

    fn registration(&self) -> Registration {
        Registration {
            iqs: IqRoute::gets(ns::PING, &[Addressee::Server, Addressee::Account]),
            server_disco: vec![Disco::Feature(ns::PING)],
            ..Registration::default()
        }
    }

    fn iq<'a>(&'a self, server: &'a Server, request: IqRequest) -> BoxFuture<'a, Routed> {
        Box::pin(async move {
            let result =
                match &request.account {
                    None => Ok(None),
                    Some(account) => match message::account_exists(server, account).await {
                        Ok(true) => Ok(None),
                        Ok(false) => Err(StanzaError::new(Condition::ServiceUnavailable)
                            .with_text("No such user")),
                        Err(()) => Err(StanzaError::new(Condition::InternalServerError)),
                    },
                };
            answer(server, &request.stanza, result).await
        })
    }
}
